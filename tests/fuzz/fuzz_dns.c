/*
 * fuzz_dns.c - libFuzzer target for the DNS responder's query path: any
 * message is answered, forwarded or dropped, never a crash. Also fed to the
 * forwarder as an upstream's reply and to the error-reply builder.
 *
 * Invariants checked: a UDP reply fits the client's size, a reply keeps the
 * query's id and a forwarded query carries ours; an upstream reply is
 * accepted only under our id.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "reconciler/dns/dns-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint16_t id_of(const uint8_t *m)
{
	return (uint16_t)(((unsigned)m[0] << 8) | m[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct dns_name names[] = { { "web-1", "172.22.0.10" },
						 { "db", "172.22.0.11" } };
	/* "web-1.example. IN A", id 0x0102, RD, as a client sent it. */
	static const uint8_t query[] = { 0x01, 0x02, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00,
					 0x00, 0x00, 0x00, 0x00, 0x05, 'w',  'e',  'b',
					 '-',  '1',  0x07, 'e',	 'x',  'a',  'm',  'p',
					 'l',  'e',  0x00, 0x00, 0x01, 0x00, 0x01 };
	struct dns_table t = { .network = 0xac160000, .mask = 0xffffff00 };
	uint8_t *out = NULL;
	size_t out_len;

	if (size > DNS_MSG_MAX)
		return 0;
	log_set_level(LOG_LEVEL_ERR);
	dns_table_set(&t, names, 2);
	for (int tcp = 0; tcp < 2; tcp++) {
		struct dns_result res;

		dns_answer(&t, data, size, tcp, 0xbeef, &res);
		if (res.action >= DNS_ACTION_MAX || (res.action == DNS_DROP) != !res.msg)
			abort();
		if (res.action == DNS_REPLY &&
		    (res.len < 12 || id_of(res.msg) != id_of(data) ||
		     (!tcp && res.len > res.limit) || res.limit < DNS_UDP_MIN))
			abort();
		if (res.action == DNS_FORWARD && (res.len < 12 || id_of(res.msg) != 0xbeef))
			abort();
		free(res.msg);
	}
	if (dns_upstream_reply(query, sizeof(query), 0x4242, data, size, DNS_UDP_MIN, &out,
			       &out_len) == 0) {
		if (size < 2 || id_of(data) != 0x4242 || out_len > DNS_UDP_MIN ||
		    id_of(out) != 0x0102)
			abort();
		free(out);
	}
	if (dns_error_reply(data, size, DNS_RCODE_SERVFAIL, &out, &out_len) == 0) {
		if (out_len < 12 || id_of(out) != id_of(data))
			abort();
		free(out);
	}
	dns_table_release(&t);
	return 0;
}
