#!/usr/bin/env python3
"""Where a running process's executable pages are: resident KB per ELF section, and the code
pages per crate (the symbols of each resident page of .text, shared evenly between the crates
whose functions are on it).

    scripts/resident-pages.py PID [EXECUTABLE]

Reads /proc/PID/maps and /proc/PID/pagemap (root, or the process's owner with
CAP_SYS_ADMIN, sees which pages are present), `readelf -SW` and `nm -C -n`.
"""

import bisect
import collections
import os
import re
import struct
import subprocess
import sys

PAGE = 4096


def main() -> None:
    pid = int(sys.argv[1])
    exe = sys.argv[2] if len(sys.argv) > 2 else os.readlink(f"/proc/{pid}/exe")
    maps = [line.split() for line in open(f"/proc/{pid}/maps") if line.rstrip().endswith(exe)]
    if not maps:
        sys.exit(f"{exe} is not mapped in process {pid}")
    base = int(maps[0][0].split("-")[0], 16)

    sections = []
    readelf = subprocess.run(["readelf", "-SW", exe], capture_output=True, text=True, check=True)
    for line in readelf.stdout.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m and int(m.group(2), 16) > 0:
            sections.append((int(m.group(2), 16), int(m.group(3), 16), m.group(1)))

    resident = []
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for mapping in maps:
            start, end = (int(x, 16) for x in mapping[0].split("-"))
            for va in range(start, end, PAGE):
                pagemap.seek(va // PAGE * 8)
                (entry,) = struct.unpack("Q", pagemap.read(8))
                if entry >> 63 & 1:
                    resident.append(va - base)

    per_section = collections.Counter()
    text = None
    for off in resident:
        name = "?"
        for start, size, sec in sections:
            if start <= off < start + size or off <= start < off + PAGE:
                name = sec
                break
        per_section[name] += PAGE // 1024
    for start, size, sec in sections:
        if sec == ".text":
            text = (start, size)
    print("resident KB per section:")
    for name, kb in per_section.most_common():
        print(f"  {kb:>8} {name}")

    if text is None:
        return
    nm = subprocess.run(["nm", "-C", "--defined-only", "-n", exe], capture_output=True, text=True)
    symbols = []
    for line in nm.stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            symbols.append((int(parts[0], 16), parts[2]))
    addrs = [a for a, _ in symbols]

    def crate(name: str) -> str:
        m = re.match(r"<?([A-Za-z_][A-Za-z0-9_]*)::", name)
        return m.group(1) if m else "(other)"

    per_crate = collections.Counter()
    for off in resident:
        if not text[0] <= off < text[0] + text[1]:
            continue
        first = max(bisect.bisect_right(addrs, off) - 1, 0)
        last = bisect.bisect_right(addrs, off + PAGE - 1) - 1
        crates = {crate(symbols[k][1]) for k in range(first, last + 1)}
        for c in crates:
            per_crate[c] += (PAGE / 1024) / len(crates)
    print("resident .text KB per crate (top 30):")
    for name, kb in per_crate.most_common(30):
        print(f"  {int(kb):>8} {name}")


if __name__ == "__main__":
    main()
