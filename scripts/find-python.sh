#!/usr/bin/env sh
# Print the path of a Python >= 3.12 interpreter, or fail with a clear message.
# Honours $PYTHON if set. Looks at python3.12+ on PATH, then pyenv and common prefixes.
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
for cand in ${PYTHON:-} python3.12 python3.13 python3.14 python3 \
    "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3 \
    /usr/local/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.13 /usr/bin/python3.13; do
  [ -n "$cand" ] || continue
  if ok "$cand"; then command -v "$cand" 2>/dev/null || echo "$cand"; exit 0; fi
done
echo "error: ebm_ppl needs Python >= 3.12 and none was found (tried python3.12, python3.13, python3.14, python3, pyenv versions). Install one or set PYTHON=/path/to/python3.12." >&2
exit 1
