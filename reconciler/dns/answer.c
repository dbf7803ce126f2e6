/*
 * answer.c - the DNS answer table and every DNS message the responder parses
 * or builds (with ldns, included only here): local answers for 'vm.' and the
 * bridge subnet's in-addr.arpa names, the query sent upstream and the
 * upstream's reply handed back. See dns-internal.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "reconciler/dns/dns-internal.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(ldns_pkt, ldns_pkt_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(ldns_rdf, ldns_rdf_deep_free);

/* ---- the table ------------------------------------------------------------------- */

/* Names compare case-insensitively in ASCII only (RFC 4343), whatever the locale. */
static int tolower_ascii(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct dns_entry *)a)->name, ((const struct dns_entry *)b)->name);
}

/* A VM name as it can be asked for: one label of letters, digits, '-' and '_'. */
static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > DNS_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= 'A' && s[i] <= 'Z') &&
		    !(s[i] >= '0' && s[i] <= '9') && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

void dns_table_set(struct dns_table *t, const struct dns_name *names, size_t n)
{
	struct dns_entry *e = xcalloc(n ? n : 1, sizeof(*e));
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		struct in_addr a;

		if (!names[i].name || !names[i].ipv4 || !name_ok(names[i].name) ||
		    inet_pton(AF_INET, names[i].ipv4, &a) != 1) {
			log_debug("dns: skipping name '%s' (%s)",
				  names[i].name ? names[i].name : "",
				  names[i].ipv4 ? names[i].ipv4 : "no address");
			continue;
		}
		for (size_t j = 0; names[i].name[j]; j++)
			e[k].name[j] = (char)tolower_ascii(names[i].name[j]);
		e[k].ip = ntohl(a.s_addr);
		k++;
	}
	qsort(e, k, sizeof(*e), entry_cmp);
	free(t->e);
	t->e = e;
	t->n = k;
}

void dns_table_release(struct dns_table *t)
{
	free(t->e);
	t->e = NULL;
	t->n = 0;
}

static const struct dns_entry *table_by_name(const struct dns_table *t, const char *lname)
{
	struct dns_entry key = { 0 };

	if (strlen(lname) > DNS_NAME_MAX)
		return NULL;
	strcpy(key.name, lname);
	return t->n ? bsearch(&key, t->e, t->n, sizeof(*t->e), entry_cmp) : NULL;
}

static const struct dns_entry *table_by_ip(const struct dns_table *t, uint32_t ip)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->e[i].ip == ip)
			return &t->e[i];
	return NULL;
}

/* ---- names ------------------------------------------------------------------------- */

/*
 * Label i of dname (0 is the leftmost), lower-cased, into buf (a label is at
 * most 63 bytes). Returns false for a label with a NUL or no such label.
 */
static bool label_at(const ldns_rdf *dname, uint8_t i, char buf[DNS_NAME_MAX + 1])
{
	_cleanup_(ldns_rdf_deep_freep) ldns_rdf *l = ldns_dname_label(dname, i);
	const uint8_t *d;
	size_t len;

	if (!l || ldns_rdf_size(l) < 2)
		return false;
	d = ldns_rdf_data(l);
	len = d[0];
	if (len > DNS_NAME_MAX || len + 1 > ldns_rdf_size(l))
		return false;
	for (size_t k = 0; k < len; k++) {
		if (!d[1 + k])
			return false;
		buf[k] = (char)tolower_ascii((char)d[1 + k]);
	}
	buf[len] = '\0';
	return true;
}

/* An in-addr.arpa octet label: 1-3 decimal digits, at most 255. */
static bool octet(const char *s, uint32_t *ret)
{
	char *end;
	unsigned long v;

	if (!*s || strlen(s) > 3 || strspn(s, "0123456789") != strlen(s))
		return false;
	v = strtoul(s, &end, 10);
	if (v > 255)
		return false;
	*ret = (uint32_t)v;
	return true;
}

/* "d.c.b.a.in-addr.arpa." -> a.b.c.d (host order). */
static bool ptr_addr(const ldns_rdf *q, uint32_t *ret)
{
	char l[DNS_NAME_MAX + 1];
	uint32_t ip = 0;

	if (ldns_dname_label_count(q) != 6 || !label_at(q, 4, l) || strcmp(l, "in-addr") != 0 ||
	    !label_at(q, 5, l) || strcmp(l, "arpa") != 0)
		return false;
	for (uint8_t i = 0; i < 4; i++) {
		uint32_t o;

		if (!label_at(q, i, l) || !octet(l, &o))
			return false;
		ip |= o << (8 * i);
	}
	*ret = ip;
	return true;
}

/* ---- building replies ------------------------------------------------------------- */

/* The reply skeleton for query q: id, question, RD copied; QR, RA set; EDNS when q had it. */
static ldns_pkt *reply_new(const ldns_pkt *q, enum dns_rcode rcode, bool authoritative)
{
	ldns_pkt *r = ldns_pkt_new();
	const ldns_rr_list *qs = ldns_pkt_question(q);

	if (!r)
		abort();
	ldns_pkt_set_id(r, ldns_pkt_id(q));
	ldns_pkt_set_qr(r, true);
	ldns_pkt_set_opcode(r, ldns_pkt_get_opcode(q));
	ldns_pkt_set_rd(r, ldns_pkt_rd(q));
	ldns_pkt_set_cd(r, ldns_pkt_cd(q));
	ldns_pkt_set_ra(r, true);
	ldns_pkt_set_aa(r, authoritative);
	ldns_pkt_set_rcode(r, (uint8_t)rcode);
	for (size_t i = 0; qs && i < ldns_rr_list_rr_count(qs) && i < 1; i++)
		(void)ldns_pkt_push_rr(r, LDNS_SECTION_QUESTION,
				       ldns_rr_clone(ldns_rr_list_rr(qs, i)));
	if (ldns_pkt_edns(q))
		ldns_pkt_set_edns_udp_size(r, DNS_EDNS_SIZE);
	return r;
}

/* An RR with the question's owner name (as asked, case kept), TTL DNS_TTL. */
static ldns_rr *rr_new(const ldns_rdf *owner, ldns_rr_type type)
{
	ldns_rr *rr = ldns_rr_new();

	if (!rr)
		abort();
	ldns_rr_set_owner(rr, ldns_rdf_clone(owner));
	ldns_rr_set_type(rr, type);
	ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
	ldns_rr_set_ttl(rr, DNS_TTL);
	return rr;
}

/* The SOA of 'vm.' in the authority section, so negative answers are cached DNS_TTL. */
static void push_soa(ldns_pkt *r)
{
	ldns_rr *soa = NULL;

	if (ldns_rr_new_frm_str(&soa, "vm. 5 IN SOA ns.vm. hostmaster.vm. 1 3600 600 86400 5", 0,
				NULL, NULL) == LDNS_STATUS_OK)
		(void)ldns_pkt_push_rr(r, LDNS_SECTION_AUTHORITY, soa);
}

/* Wire form of r, truncated to question + TC when over limit. Returns the length or 0. */
static size_t to_wire(ldns_pkt *r, size_t limit, uint8_t **ret)
{
	uint8_t *w = NULL;
	size_t len = 0;

	if (ldns_pkt2wire(&w, r, &len) != LDNS_STATUS_OK)
		return 0;
	if (len > limit) {
		free(w);
		w = NULL;
		ldns_rr_list_deep_free(ldns_pkt_answer(r));
		ldns_rr_list_deep_free(ldns_pkt_authority(r));
		ldns_rr_list_deep_free(ldns_pkt_additional(r));
		ldns_pkt_set_answer(r, ldns_rr_list_new());
		ldns_pkt_set_authority(r, ldns_rr_list_new());
		ldns_pkt_set_additional(r, ldns_rr_list_new());
		ldns_pkt_set_ancount(r, 0);
		ldns_pkt_set_nscount(r, 0);
		ldns_pkt_set_arcount(r, 0);
		ldns_pkt_set_tc(r, true);
		if (ldns_pkt2wire(&w, r, &len) != LDNS_STATUS_OK || len > limit) {
			free(w);
			return 0;
		}
	}
	*ret = w;
	return len;
}

static void reply_wire(ldns_pkt *r, size_t limit, struct dns_result *res)
{
	res->len = to_wire(r, limit, &res->msg);
	res->action = res->len ? DNS_REPLY : DNS_DROP;
}

/* The biggest reply the client of q takes. */
static size_t client_limit(const ldns_pkt *q, bool tcp)
{
	size_t n;

	if (tcp)
		return DNS_MSG_MAX;
	n = ldns_pkt_edns(q) ? ldns_pkt_edns_udp_size(q) : 0;
	if (n < DNS_UDP_MIN)
		n = DNS_UDP_MIN;
	return n > DNS_UDP_MAX ? DNS_UDP_MAX : n;
}

/* ---- queries ---------------------------------------------------------------------- */

/* A name under 'vm.': an A from the table, NODATA for other types, else NXDOMAIN. */
static void answer_vm(const struct dns_table *t, const ldns_pkt *q, const ldns_rr *qr,
		      uint8_t labels, size_t limit, struct dns_result *res)
{
	_cleanup_(ldns_pkt_freep) ldns_pkt *r = NULL;
	const ldns_rdf *owner = ldns_rr_owner(qr);
	const struct dns_entry *e = NULL;
	char l[DNS_NAME_MAX + 1];
	ldns_rr_type type = ldns_rr_get_type(qr);
	bool exists = labels == 1; /* the zone apex itself */

	if (labels == 2 && label_at(owner, 0, l)) {
		e = table_by_name(t, l);
		exists = e != NULL;
	}
	r = reply_new(q, exists ? DNS_RCODE_NOERROR : DNS_RCODE_NXDOMAIN, true);
	if (e && (type == LDNS_RR_TYPE_A || type == LDNS_RR_TYPE_ANY)) {
		ldns_rr *a = rr_new(owner, LDNS_RR_TYPE_A);
		uint32_t be = htonl(e->ip);

		ldns_rr_push_rdf(a, ldns_rdf_new_frm_data(LDNS_RDF_TYPE_A, 4, &be));
		(void)ldns_pkt_push_rr(r, LDNS_SECTION_ANSWER, a);
	} else {
		push_soa(r);
	}
	reply_wire(r, limit, res);
}

/* A PTR for an address in the bridge subnet: the VM's name, or NXDOMAIN. */
static void answer_ptr(const struct dns_table *t, const ldns_pkt *q, const ldns_rr *qr, uint32_t ip,
		       size_t limit, struct dns_result *res)
{
	_cleanup_(ldns_pkt_freep) ldns_pkt *r = NULL;
	const struct dns_entry *e = table_by_ip(t, ip);
	ldns_rr_type type = ldns_rr_get_type(qr);

	r = reply_new(q, e ? DNS_RCODE_NOERROR : DNS_RCODE_NXDOMAIN, true);
	if (e && (type == LDNS_RR_TYPE_PTR || type == LDNS_RR_TYPE_ANY)) {
		ldns_rr *p = rr_new(ldns_rr_owner(qr), LDNS_RR_TYPE_PTR);
		_cleanup_free_ char *target = xasprintf("%s.vm.", e->name);

		ldns_rr_push_rdf(p, ldns_dname_new_frm_str(target));
		(void)ldns_pkt_push_rr(r, LDNS_SECTION_ANSWER, p);
	}
	reply_wire(r, limit, res);
}

static void answer_rcode(const ldns_pkt *q, enum dns_rcode rcode, size_t limit,
			 struct dns_result *res)
{
	_cleanup_(ldns_pkt_freep) ldns_pkt *r = reply_new(q, rcode, false);

	reply_wire(r, limit, res);
}

void dns_answer(const struct dns_table *t, const uint8_t *q, size_t len, bool tcp, uint16_t fwd_id,
		struct dns_result *res)
{
	_cleanup_(ldns_pkt_freep) ldns_pkt *p = NULL;
	const ldns_rr *qr;
	const ldns_rdf *owner;
	char last[DNS_NAME_MAX + 1];
	uint8_t labels;
	uint32_t ip;
	ldns_rr_type type;

	memset(res, 0, sizeof(*res));
	res->action = DNS_DROP;
	if (!len || len > DNS_MSG_MAX || ldns_wire2pkt(&p, q, len) != LDNS_STATUS_OK || !p)
		return;
	if (ldns_pkt_qr(p))
		return; /* a response: never answer one (no loops between responders) */
	res->client_id = ldns_pkt_id(p);
	res->limit = client_limit(p, tcp);
	if (ldns_pkt_get_opcode(p) != LDNS_PACKET_QUERY)
		return answer_rcode(p, DNS_RCODE_REFUSED, res->limit, res);
	if (ldns_pkt_qdcount(p) != 1 || ldns_rr_list_rr_count(ldns_pkt_question(p)) != 1)
		return answer_rcode(p, DNS_RCODE_FORMERR, res->limit, res);
	qr = ldns_rr_list_rr(ldns_pkt_question(p), 0);
	owner = ldns_rr_owner(qr);
	type = ldns_rr_get_type(qr);
	if (!owner || ldns_rdf_get_type(owner) != LDNS_RDF_TYPE_DNAME)
		return answer_rcode(p, DNS_RCODE_FORMERR, res->limit, res);
	if (ldns_rr_get_class(qr) != LDNS_RR_CLASS_IN || type == LDNS_RR_TYPE_AXFR ||
	    type == LDNS_RR_TYPE_IXFR)
		return answer_rcode(p, DNS_RCODE_REFUSED, res->limit, res);
	labels = ldns_dname_label_count(owner);
	if (labels >= 1 && label_at(owner, (uint8_t)(labels - 1), last) && strcmp(last, "vm") == 0)
		return answer_vm(t, p, qr, labels, res->limit, res);
	if (ptr_addr(owner, &ip) && t->mask && (ip & t->mask) == t->network)
		return answer_ptr(t, p, qr, ip, res->limit, res);

	/* Everybody else's name: the same query upstream under our id. */
	ldns_pkt_set_id(p, fwd_id);
	if (ldns_pkt2wire(&res->msg, p, &res->len) != LDNS_STATUS_OK) {
		res->msg = NULL;
		res->len = 0;
		return answer_rcode(p, DNS_RCODE_SERVFAIL, res->limit, res);
	}
	res->action = DNS_FORWARD;
}

/* ---- upstream replies ------------------------------------------------------------- */

static bool same_question(const ldns_pkt *a, const ldns_pkt *b)
{
	const ldns_rr_list *qa = ldns_pkt_question(a), *qb = ldns_pkt_question(b);
	const ldns_rr *ra, *rb;

	if (ldns_rr_list_rr_count(qa) != 1 || ldns_rr_list_rr_count(qb) != 1)
		return false;
	ra = ldns_rr_list_rr(qa, 0);
	rb = ldns_rr_list_rr(qb, 0);
	return ldns_rr_get_type(ra) == ldns_rr_get_type(rb) &&
	       ldns_rr_get_class(ra) == ldns_rr_get_class(rb) &&
	       ldns_dname_compare(ldns_rr_owner(ra), ldns_rr_owner(rb)) == 0;
}

int dns_upstream_reply(const uint8_t *q, size_t qlen, uint16_t fwd_id, const uint8_t *r,
		       size_t rlen, size_t limit, uint8_t **ret, size_t *ret_len)
{
	_cleanup_(ldns_pkt_freep) ldns_pkt *qp = NULL;
	_cleanup_(ldns_pkt_freep) ldns_pkt *rp = NULL;
	uint8_t *w = NULL;
	size_t len;

	if (!rlen || rlen > DNS_MSG_MAX || ldns_wire2pkt(&rp, r, rlen) != LDNS_STATUS_OK || !rp ||
	    ldns_wire2pkt(&qp, q, qlen) != LDNS_STATUS_OK || !qp)
		return -EBADMSG;
	if (!ldns_pkt_qr(rp) || ldns_pkt_id(rp) != fwd_id || !same_question(qp, rp))
		return -EBADMSG;
	ldns_pkt_set_id(rp, ldns_pkt_id(qp));
	len = to_wire(rp, limit, &w);
	if (!len)
		return -EBADMSG;
	*ret = w;
	*ret_len = len;
	return 0;
}

int dns_error_reply(const uint8_t *q, size_t qlen, enum dns_rcode rcode, uint8_t **ret,
		    size_t *ret_len)
{
	_cleanup_(ldns_pkt_freep) ldns_pkt *qp = NULL;
	_cleanup_(ldns_pkt_freep) ldns_pkt *r = NULL;
	uint8_t *w = NULL;
	size_t len;

	if (ldns_wire2pkt(&qp, q, qlen) != LDNS_STATUS_OK || !qp)
		return -EBADMSG;
	r = reply_new(qp, rcode, false);
	len = to_wire(r, DNS_MSG_MAX, &w);
	if (!len)
		return -EBADMSG;
	*ret = w;
	*ret_len = len;
	return 0;
}
