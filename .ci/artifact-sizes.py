#!/usr/bin/env python3
"""The README's table of static binary and image sizes, from what deploy/oci/build.sh measured.

    artifact-sizes.py write README.md SIZES_TSV   rewrite the table between the markers
    artifact-sizes.py check README.md SIZES_TSV   fail if a figure is off by more than 3%

SIZES_TSV has one line per measurement: kind (binary, image, image-gzip), name, arch (amd64,
arm64) and bytes. `.ci/run` runs `check` on every build, so the README's figures are the
build's, not copied by hand; after a change that moves a size, run `write` and commit.
"""

import re
import sys

BEGIN = "<!-- artifact-sizes:begin (.ci/artifact-sizes.py write) -->"
END = "<!-- artifact-sizes:end -->"
ARCHES = [("amd64", "x86_64"), ("arm64", "aarch64")]
# Relative difference a figure may have from the build's before `check` fails: code changes
# move sizes a little; a new dependency or a profile change moves them more.
TOLERANCE = 0.03


def read_sizes(path):
    sizes = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 4 or not fields[3].isdigit():
                sys.exit(f"{path}:{number}: expected kind, name, arch, bytes: {line!r}")
            kind, name, arch, size = fields
            sizes[(kind, name, arch)] = int(size)
    return sizes


def mb(size):
    return f"{size / 1e6:.1f}"


def table(sizes):
    def cell(kinds, name, arch):
        values = [sizes.get((kind, name, arch)) for kind in kinds]
        if any(v is None for v in values):
            sys.exit(f"no {'/'.join(kinds)} size of {name} for {arch} in the measurements")
        return " / ".join(mb(v) for v in values) + " MB"

    rows = [
        "| artifact | " + " | ".join(label for _, label in ARCHES) + " |",
        "|---|" + "---|" * len(ARCHES),
    ]
    for name in ["funless-core", "funless-worker", "fl"]:
        rows.append(
            f"| `{name}` static binary | "
            + " | ".join(cell(["binary"], name, arch) for arch, _ in ARCHES)
            + " |"
        )
    for name in ["funless-core", "funless-worker"]:
        rows.append(
            f"| `{name}` image, as loaded / gzipped | "
            + " | ".join(cell(["image", "image-gzip"], name, arch) for arch, _ in ARCHES)
            + " |"
        )
    return "\n".join(rows)


def block_of(readme):
    match = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), readme, re.S)
    if not match:
        sys.exit(f"README has no block between {BEGIN!r} and {END!r}")
    return match


def figures(text):
    return [float(x) for x in re.findall(r"(\d+\.\d+)", text)]


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("write", "check"):
        sys.exit(__doc__)
    command, readme_path, sizes_path = sys.argv[1:]
    expected = table(read_sizes(sizes_path))
    with open(readme_path, encoding="utf-8") as f:
        readme = f.read()
    match = block_of(readme)
    if command == "write":
        readme = readme[: match.start(1)] + expected + readme[match.end(1) :]
        with open(readme_path, "w", encoding="utf-8") as f:
            f.write(readme)
        print(expected)
        return
    written = match.group(1)
    rows_written = [r.split("|")[1].strip() for r in written.splitlines()]
    rows_expected = [r.split("|")[1].strip() for r in expected.splitlines()]
    problems = []
    if rows_written != rows_expected:
        problems.append(f"rows differ: README {rows_written}, build {rows_expected}")
    else:
        for row_w, row_e in zip(written.splitlines(), expected.splitlines()):
            for got, want in zip(figures(row_w), figures(row_e)):
                if abs(got - want) > TOLERANCE * want:
                    problems.append(
                        f"{row_w.split('|')[1].strip()}: README says {got} MB, the build {want} MB"
                    )
    print(expected)
    if problems:
        print("\nREADME's sizes do not match this build (more than 3% off):", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        print(
            f"run: .ci/artifact-sizes.py write {readme_path} {sizes_path}, and commit",
            file=sys.stderr,
        )
        sys.exit(1)
    print("README's sizes match this build (within 3%)")


if __name__ == "__main__":
    main()
