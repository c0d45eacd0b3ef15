#!/usr/bin/env bash
# The Python environment of the official e-invoice validator (../shared/einvoice-rules/validate.py)
# and of the API fuzzer (schemathesis): a venv in .services/venv with saxonche, xmlschema, lxml and
# schemathesis from PyPI (pinned). Idempotent; prints
# the interpreter's path. Tests find it there, or at $GPULEDGER_PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.services/venv
if ! "$VENV/bin/python" -c "import saxonche, xmlschema, lxml, schemathesis" 2>/dev/null; then
    echo "python.sh: creating $VENV (saxonche, xmlschema, lxml, schemathesis from PyPI)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        saxonche==13.1.1 xmlschema==4.3.2 elementpath==5.1.4 lxml==6.1.3 schemathesis==4.32.5 >&2
fi
echo "$PWD/$VENV/bin/python"
