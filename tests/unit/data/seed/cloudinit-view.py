#!/usr/bin/env python3
"""What cloud-init would make of a rendered seed directory.

Usage: cloudinit-view.py DIR  (DIR holds meta-data, network-config, user-data)

Parses the files with PyYAML (the parser cloud-init uses) and Python's email
package, then merges the text/cloud-config parts in order the way cloud-init
22.4 documents its mergers (each part merged into what came before with the
part's own merge_how, else dict(replace)+list()+str()). Prints canonical JSON:
{"meta-data": ..., "network-config": ..., "cloud-config": <merged>,
 "scripts": [[filename, first line], ...], "parts": [content types]}.
Written for banger's tests from cloud-init's documented behaviour.
"""
import email
import json
import os
import sys

import yaml

DEFAULT_MERGERS = {"dict": {"replace"}, "list": set(), "str": set()}


def mergers_of(cfg):
    how = cfg.get("merge_how") if isinstance(cfg, dict) else None
    if not how:
        return DEFAULT_MERGERS
    if isinstance(how, str):
        out = {}
        for item in how.split("+"):
            name, _, rest = item.partition("(")
            out[name.strip()] = {s.strip() for s in rest.rstrip(")").split(",") if s.strip()}
        return out
    return {m["name"]: set(m.get("settings") or []) for m in how}


def merge(ms, old, new):
    if isinstance(old, dict) and "dict" in ms:
        return merge_dict(ms, old, new)
    if isinstance(old, list) and "list" in ms:
        return merge_list(ms, old, new)
    if isinstance(old, str) and "str" in ms:
        return old + new if "append" in ms["str"] and isinstance(new, str) else new
    return new


def merge_dict(ms, old, new):
    if not isinstance(new, dict):
        return old
    opts = ms["dict"]
    replace = "replace" in opts
    rec_list = "recurse_list" in opts or "recurse_array" in opts
    rec_str = "recurse_str" in opts
    out = dict(old)
    for k, v in new.items():
        if k not in out:
            out[k] = v
        elif v is None and "allow_delete" in opts:
            del out[k]
        elif replace:
            out[k] = v
        elif isinstance(v, list) and rec_list:
            out[k] = merge(ms, out[k], v)
        elif isinstance(v, str) and rec_str:
            out[k] = merge(ms, out[k], v)
        elif isinstance(v, dict):
            out[k] = merge(ms, out[k], v)
    return out


def merge_list(ms, old, new):
    opts = ms["list"]
    method = next((m for m in ("append", "prepend", "replace", "no_replace") if m in opts),
                  "replace")
    if method == "replace" and not isinstance(new, list):
        return new
    if method == "append":
        return list(old) + list(new)
    if method == "prepend":
        return list(new) + list(old)
    out = list(old)
    for i in range(min(len(out), len(new))):
        if method == "replace":
            out[i] = new[i]
    return out


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "meta-data"), encoding="utf-8") as f:
        meta = yaml.safe_load(f)
    with open(os.path.join(d, "network-config"), encoding="utf-8") as f:
        net = yaml.safe_load(f)
    with open(os.path.join(d, "user-data"), encoding="utf-8") as f:
        text = f.read()
    parts = []
    if "mime-version:" in text[:4096].lower():
        msg = email.message_from_string(text)
        for part in msg.walk():
            if part.get_content_maintype() == "multipart":
                continue
            payload = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
            parts.append((part.get_content_type(), part.get_filename(), payload))
    else:
        parts.append(("text/cloud-config", "user-data", text))
    merged = {}
    scripts = []
    types = []
    for ctype, name, payload in parts:
        types.append(ctype)
        if ctype == "text/cloud-config":
            cfg = yaml.safe_load(payload) or {}
            assert isinstance(cfg, dict), "a cloud-config part is not a mapping"
            merged = merge(mergers_of(cfg), merged, cfg)
        elif ctype == "text/x-shellscript":
            scripts.append([name, payload.splitlines()[0]])
    merged.pop("merge_how", None)
    json.dump({"meta-data": meta, "network-config": net, "cloud-config": merged,
               "scripts": scripts, "parts": types}, sys.stdout, indent=1, sort_keys=True,
              ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
