/*
 * digest.c - SHA-256, HMAC-SHA1, base64 and Ed25519 via libcrypto; see digest.h.
 */
#include "common/digest.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/xalloc.h"

void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN])
{
	SHA256(data, len, out);
}

/* The stream is libcrypto's EVP_MD_CTX; the struct only gives it a type of our own. */
struct sha256_stream *sha256_stream_new(void)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		abort(); /* out of memory, as xmalloc() treats it */
	return (struct sha256_stream *)ctx;
}

void sha256_stream_update(struct sha256_stream *s, const void *data, size_t len)
{
	if (EVP_DigestUpdate((EVP_MD_CTX *)s, data, len) != 1)
		abort();
}

void sha256_stream_finish(struct sha256_stream *s, uint8_t out[SHA256_LEN])
{
	unsigned int n = SHA256_LEN;

	if (EVP_DigestFinal_ex((EVP_MD_CTX *)s, out, &n) != 1)
		abort();
	EVP_MD_CTX_free((EVP_MD_CTX *)s);
}

void sha256_stream_free(struct sha256_stream *s)
{
	EVP_MD_CTX_free((EVP_MD_CTX *)s);
}

void hex_encode(const uint8_t *data, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = hex[data[i] >> 4];
		out[2 * i + 1] = hex[data[i] & 15];
	}
	out[2 * len] = '\0';
}

void sha256_hex(const void *data, size_t len, char out[SHA256_HEX_LEN + 1])
{
	uint8_t md[SHA256_LEN];

	sha256(data, len, md);
	hex_encode(md, sizeof(md), out);
}

void hmac_sha1(const void *key, size_t key_len, const void *data, size_t len, uint8_t out[SHA1_LEN])
{
	unsigned int out_len = SHA1_LEN;

	HMAC(EVP_sha1(), key, (int)key_len, data, len, out, &out_len);
}

char *base64_encode(const void *data, size_t len)
{
	size_t out_len = 4 * ((len + 2) / 3);
	char *out = xmalloc(out_len + 1);

	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	out[out_len] = '\0';
	return out;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int base64_decode(const char *s, size_t slen, uint8_t **ret, size_t *ret_len)
{
	uint8_t *out;
	size_t o = 0, pad = 0;

	if (slen % 4 != 0)
		return -EINVAL;
	out = xmalloc(slen / 4 * 3 + 1);
	for (size_t i = 0; i < slen; i += 4) {
		int v[4];

		for (int k = 0; k < 4; k++) {
			char c = s[i + k];

			if (c == '=' && i + 4 == slen && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad) /* data after padding */
				goto bad;
			v[k] = b64_value(c);
			if (v[k] < 0)
				goto bad;
		}
		if (pad == 1 && s[i + 3] != '=')
			goto bad;
		out[o++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[o++] = (uint8_t)((v[1] & 15) << 4 | v[2] >> 2);
		if (pad < 1)
			out[o++] = (uint8_t)((v[2] & 3) << 6 | v[3]);
	}
	*ret = out;
	*ret_len = o;
	return 0;
bad:
	free(out);
	return -EINVAL;
}

int ed25519_keygen(uint8_t seed[ED25519_SEED_LEN], uint8_t pub[ED25519_PUB_LEN])
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	size_t seed_len = ED25519_SEED_LEN, pub_len = ED25519_PUB_LEN;
	int r = -EIO;

	if (!key)
		return -EIO;
	/* For Ed25519 the raw private key is the seed, not the expanded 64-byte secret. */
	if (EVP_PKEY_get_raw_private_key(key, seed, &seed_len) == 1 &&
	    EVP_PKEY_get_raw_public_key(key, pub, &pub_len) == 1 && seed_len == ED25519_SEED_LEN &&
	    pub_len == ED25519_PUB_LEN)
		r = 0;
	else
		OPENSSL_cleanse(seed, ED25519_SEED_LEN);
	EVP_PKEY_free(key);
	return r;
}

int ed25519_sign(const uint8_t seed[ED25519_SEED_LEN], const void *data, size_t len,
		 uint8_t sig[ED25519_SIG_LEN])
{
	EVP_PKEY *key =
		EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, ED25519_SEED_LEN);
	EVP_MD_CTX *ctx = NULL;
	size_t sig_len = ED25519_SIG_LEN;
	int r = -EINVAL;

	if (!key)
		return -EINVAL;
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		abort();
	/* Ed25519 hashes internally: no digest, one-shot EVP_DigestSign(). */
	if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
	    EVP_DigestSign(ctx, sig, &sig_len, data, len) == 1 && sig_len == ED25519_SIG_LEN)
		r = 0;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(key);
	return r;
}

int random_bytes(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
