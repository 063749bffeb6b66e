#!/usr/bin/env bash
# Make the MHE party interpreter's venv (default .venv-mhe): the first CPython 3.12 or
# 3.10 found (on PATH, then under pyenv's versions folder) whose OpenFHE wheel imports.
# OpenFHE's wheels carry one compiled extension each: the `.0.24.4` builds are CPython
# 3.12 only and need libstdc++ of GCC 13 (GLIBCXX_3.4.32), the `.0.22.4` builds CPython
# 3.10 only (GCC 11's libstdc++ suffices).  A party needs numpy and openfhe alone (the
# project is on its PYTHONPATH), so the project itself, which asks for 3.11+, is not
# installed there.  Finding none is not an error: MHE cells are then Unavailable and
# `cohortbench doctor` says why.
set -uo pipefail
target=${1:-.venv-mhe}
OPENFHE=1.6.1.0
pins() { case "$1" in 3.12) echo "$OPENFHE.24.4" ;; 3.10) echo "$OPENFHE.22.4" ;; esac; }

candidates() {
    local root=${PYENV_ROOT:-$HOME/.pyenv}
    for minor in 3.12 3.10; do
        command -v "python$minor" 2>/dev/null
        ls -d "$root"/versions/"$minor".*/bin/"python$minor" 2>/dev/null | sort -rV
    done
}

rm -rf "$target" "$target.new"
for python in $(candidates); do
    minor=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
    pin=$(pins "$minor")
    [ -n "$pin" ] || continue
    echo "MHE interpreter: trying $python (CPython $minor, openfhe==$pin)"
    "$python" -m venv "$target.new" || { rm -rf "$target.new"; continue; }
    if "$target.new/bin/python" -m pip install --quiet "openfhe==$pin" "numpy>=1.26" \
        && "$target.new/bin/python" -c 'import openfhe' 2>/dev/null; then
        mv "$target.new" "$target"
        echo "MHE interpreter: $target/bin/python (CPython $minor, openfhe $pin)"
        exit 0
    fi
    echo "MHE interpreter: openfhe does not import under $python; trying the next"
    rm -rf "$target.new"
done
echo "MHE interpreter: no CPython 3.12 or 3.10 here runs OpenFHE; MHE cells will be unavailable"
echo "  (install CPython 3.10 or 3.12 and rerun make install, or set COHORTBENCH_MHE_PYTHON)"
