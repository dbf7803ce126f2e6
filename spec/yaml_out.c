/*
 * yaml_out.c - render a spec as a YAML document (block style, two-space
 * indent, defaults written out) as 'banger apply' stores it.
 *
 * A small writer rather than libyaml's emitter: the shape is fixed, and a
 * scalar is written plain only when it is unambiguously a string (else
 * double-quoted with escapes), so parsing the output gives back the same
 * spec. The fuzz target checks that round trip.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common/buf.h"
#include "spec/internal.h"

static bool plain_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '/' || c == '.' || c == '_' || c == '-' || c == '+' || c == '=' || c == '@' ||
	       c == ',';
}

/* Plain style only for ASCII text that reads back as this exact string. */
static bool can_be_plain(const char *s)
{
	size_t len = strlen(s);

	/* Indicators and '-', '.', '+' (numbers, ".inf") may not start a plain string. */
	if (len == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
			  (s[0] >= '0' && s[0] <= '9') || s[0] == '/' || s[0] == '_'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!plain_char((unsigned char)s[i]))
			return false;
	return spec_resolve_plain(s, len) == SPEC_KIND_STRING;
}

/* Decode one UTF-8 character (input already valid, or bytes pass through one by one). */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0 && (s[1] & 0xc0) == 0x80) {
		*cp = (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
		return 2;
	}
	if ((s[0] & 0xf0) == 0xe0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80) {
		*cp = (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
		return 3;
	}
	if ((s[0] & 0xf8) == 0xf0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80 &&
	    (s[3] & 0xc0) == 0x80) {
		*cp = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 |
		      (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
		return 4;
	}
	*cp = s[0];
	return 1;
}

void spec_yaml_quote(struct buf *b, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	buf_addch(b, '"');
	while (*s) {
		uint32_t cp;
		size_t n = utf8_decode(s, &cp);

		if (cp == '"' || cp == '\\') {
			buf_addch(b, '\\');
			buf_addch(b, (char)cp);
		} else if (cp == '\n') {
			buf_adds(b, "\\n");
		} else if (cp == '\t') {
			buf_adds(b, "\\t");
		} else if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) ||
			   (n == 1 && cp >= 0x80)) {
			/* Controls, C1 (U+0085 is a YAML line break) and stray bytes. */
			buf_addf(b, "\\x%02x", (unsigned)cp);
		} else if (cp == 0x2028 || cp == 0x2029 || cp == 0xfeff || cp == 0xfffe ||
			   cp == 0xffff || (cp >= 0xd800 && cp <= 0xdfff)) {
			buf_addf(b, "\\u%04x", (unsigned)cp);
		} else {
			buf_add(b, s, n);
		}
		s += n;
	}
	buf_addch(b, '"');
}

static void add_scalar(struct buf *b, const char *s)
{
	if (!s)
		s = "";
	if (can_be_plain(s))
		buf_adds(b, s);
	else
		spec_yaml_quote(b, s);
}

static void add_field(struct buf *b, int indent, const char *key, const char *value)
{
	buf_addf(b, "%*s%s: ", indent, "", key);
	add_scalar(b, value);
	buf_addch(b, '\n');
}

/*
 * A literal block scalar reads back as the same text only when every line is
 * printable (no CR, no other YAML line break, no BOM) and no line is
 * whitespace only (those fold into the indentation rules).
 */
static bool can_be_literal(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t len = strlen(str);
	bool blank_so_far = true, any = false;

	if (len == 0 || !spec_utf8_valid(str, len))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned c = s[i];

		if (c == '\n') {
			if (any && blank_so_far)
				return false;
			blank_so_far = true;
			any = false;
			continue;
		}
		any = true;
		if (c != ' ' && c != '\t')
			blank_so_far = false;
		if ((c < 0x20 && c != '\t') || c == 0x7f || (c == 0xc2 && s[i + 1] <= 0x9f) ||
		    (c == 0xe2 && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) ||
		    (c == 0xef && s[i + 1] == 0xbb && s[i + 2] == 0xbf) ||
		    (c == 0xef && s[i + 1] == 0xbf && (s[i + 2] == 0xbe || s[i + 2] == 0xbf)))
			return false;
	}
	return !(any && blank_so_far);
}

/* key: |2[-+] with the text's lines indented by indent + 2; else a quoted scalar. */
static void add_text(struct buf *b, int indent, const char *key, const char *value)
{
	size_t len = strlen(value), trailing = 0;
	const char *p = value;

	if (!can_be_literal(value)) {
		add_field(b, indent, key, value);
		return;
	}
	while (trailing < len && value[len - 1 - trailing] == '\n')
		trailing++;
	/* The explicit indentation indicator keeps text whose first line is indented. */
	buf_addf(b, "%*s%s: |2%s\n", indent, "", key,
		 trailing == 0	 ? "-"
		 : trailing == 1 ? ""
				 : "+");
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);

		if (n)
			buf_addf(b, "%*s%.*s", indent + 2, "", (int)n, p);
		buf_addch(b, '\n');
		p += n + (nl ? 1 : 0);
	}
}

static void add_enum(struct buf *b, int indent, const char *key, const char *value)
{
	add_field(b, indent, key, value ? value : "");
}

char *spec_to_yaml(const struct vm_spec *s)
{
	struct buf b;

	buf_init(&b);
	buf_addf(&b, "apiVersion: %s\nkind: %s\nmetadata:\n", SPEC_API_VERSION, SPEC_KIND);
	add_field(&b, 2, "name", s->name);
	if (s->n_labels) {
		buf_adds(&b, "  labels:\n");
		for (size_t i = 0; i < s->n_labels; i++) {
			buf_adds(&b, "    ");
			add_scalar(&b, s->labels[i].key);
			buf_adds(&b, ": ");
			add_scalar(&b, s->labels[i].value);
			buf_addch(&b, '\n');
		}
	}
	buf_adds(&b, "spec:\n");
	add_enum(&b, 2, "state", vm_desired_state_to_string(s->state));
	add_enum(&b, 2, "vmm", vmm_kind_to_string(s->vmm));
	buf_addf(&b, "  vcpus: %u\n  memoryMiB: %u\n  kernel:\n", s->vcpus, s->memory_mib);
	add_field(&b, 4, "path", s->kernel_path);
	if (s->kernel_initrd && *s->kernel_initrd)
		add_field(&b, 4, "initrd", s->kernel_initrd);
	if (s->kernel_args && *s->kernel_args)
		add_field(&b, 4, "args", s->kernel_args);
	buf_adds(&b, "  rootfs:\n");
	add_field(&b, 4, "image", s->rootfs_image);
	if (s->rootfs_size_mib)
		buf_addf(&b, "    sizeMiB: %llu\n", (unsigned long long)s->rootfs_size_mib);
	if (s->work_disk_mib)
		buf_addf(&b, "  workDisk:\n    sizeMiB: %llu\n",
			 (unsigned long long)s->work_disk_mib);
	if ((s->ip && *s->ip) || s->egress != SPEC_EGRESS_DEFAULT || s->n_ports) {
		buf_adds(&b, "  network:\n");
		if (s->ip && *s->ip)
			add_field(&b, 4, "ip", s->ip);
		if (s->egress != SPEC_EGRESS_DEFAULT)
			add_enum(&b, 4, "egress", spec_egress_to_string(s->egress));
		if (s->n_ports)
			buf_adds(&b, "    ports:\n");
		for (size_t i = 0; i < s->n_ports; i++)
			buf_addf(&b,
				 "      - {hostPort: %u, guestPort: %u, protocol: %s, hostIP: "
				 "\"%s\"}\n",
				 s->ports[i].host_port, s->ports[i].guest_port,
				 spec_proto_to_string(s->ports[i].protocol), s->ports[i].host_ip);
	}
	buf_adds(&b, "  ssh:\n");
	add_field(&b, 4, "user", s->ssh_user ? s->ssh_user : "root");
	if (s->n_ssh_keys) {
		buf_adds(&b, "    authorizedKeys:\n");
		for (size_t i = 0; i < s->n_ssh_keys; i++) {
			buf_adds(&b, "      - ");
			add_scalar(&b, s->ssh_keys[i]);
			buf_addch(&b, '\n');
		}
	}
	if (s->guest_config != GUEST_CONFIG_AUTO) {
		buf_adds(&b, "  guest:\n");
		add_enum(&b, 4, "config", guest_config_to_string(s->guest_config));
	}
	/* A userDataFile stays a reference: reading the document back reads the file again. */
	if (s->cloudinit_user_data_file) {
		buf_adds(&b, "  cloudInit:\n");
		add_field(&b, 4, "userDataFile", s->cloudinit_user_data_file);
	} else if (s->cloudinit_user_data) {
		buf_adds(&b, "  cloudInit:\n");
		add_text(&b, 4, "userData", s->cloudinit_user_data);
	}
	add_enum(&b, 2, "restartPolicy", restart_policy_to_string(s->restart_policy));
	return buf_detach(&b, NULL);
}
