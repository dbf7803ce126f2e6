/*
 * digest.h - hashes, base64 and Ed25519 keys, backed by OpenSSL's libcrypto (the only
 * includer of its headers; libssh2 already depends on it).
 */
#ifndef BANGER_COMMON_DIGEST_H
#define BANGER_COMMON_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_HEX_LEN 64
#define SHA1_LEN 20
#define SHA256_LEN 32

/* Lowercase hex of len bytes into out (2 * len chars plus NUL). */
void hex_encode(const uint8_t *data, size_t len, char *out);

/* SHA-256 of data as 64 lowercase hex chars plus NUL in out. */
void sha256_hex(const void *data, size_t len, char out[SHA256_HEX_LEN + 1]);

/* Raw SHA-256. */
void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN]);

/*
 * SHA-256 of data fed in pieces (a file too large to hold in memory):
 * sha256_stream_new(), sha256_stream_update() any number of times, then
 * sha256_stream_finish(), which writes the digest and frees the stream.
 * sha256_stream_free() frees one that is not finished (NULL is fine).
 */
struct sha256_stream;
struct sha256_stream *sha256_stream_new(void);
void sha256_stream_update(struct sha256_stream *s, const void *data, size_t len);
void sha256_stream_finish(struct sha256_stream *s, uint8_t out[SHA256_LEN]);
void sha256_stream_free(struct sha256_stream *s);

/* HMAC-SHA1(key, data) into out. */
void hmac_sha1(const void *key, size_t key_len, const void *data, size_t len,
	       uint8_t out[SHA1_LEN]);

/* Standard base64 with padding. Owned, NUL-terminated result. */
char *base64_encode(const void *data, size_t len);

/*
 * Decode standard base64 (padding required, no whitespace). Returns 0 with
 * an owned buffer and its length, or -EINVAL for malformed input.
 */
int base64_decode(const char *s, size_t slen, uint8_t **ret, size_t *ret_len);

#define ED25519_SEED_LEN 32
#define ED25519_PUB_LEN 32
#define ED25519_SIG_LEN 64

/*
 * A new random Ed25519 key pair from libcrypto: the 32-byte seed (the RFC
 * 8032 private key) and the public key. Returns 0, or -EIO if libcrypto
 * fails. libcrypto's copy is wiped when freed; the caller wipes seed.
 */
int ed25519_keygen(uint8_t seed[ED25519_SEED_LEN], uint8_t pub[ED25519_PUB_LEN]);

/*
 * Ed25519 signature of data with the private key given by its 32-byte seed
 * (RFC 8032) into sig. Returns 0, or -EINVAL if libcrypto refuses the key.
 * libcrypto's copy of the key is wiped when freed; the caller wipes seed.
 */
int ed25519_sign(const uint8_t seed[ED25519_SEED_LEN], const void *data, size_t len,
		 uint8_t sig[ED25519_SIG_LEN]);

/* Fill buf with cryptographically random bytes. Returns 0 or -errno. */
int random_bytes(void *buf, size_t len);

#endif
