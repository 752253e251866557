#!/usr/bin/env bash
# Set up a local virtual environment (once) and run the main job or the tests.
#   bash run.sh main   # SFT -> RL -> evaluation pipeline on the built-in suite
#   bash run.sh test   # the test suite
set -euo pipefail
cd "$(dirname "$0")"
VENV=${INSTRUCT_ENV_VENV:-.venv}
PY=${PYTHON:-python3}

EXTRAS="dev,server,bench,peft,reasoning,postgres"
stamp="$VENV/.instruct-env-installed"
want=$( (cat pyproject.toml; echo "$EXTRAS") | sha256sum | cut -c1-16)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[run.sh] creating $VENV and installing dependencies (torch CPU build first)..."
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch first, pinned to a CPU build that installs quickly; the project's own
    # requirement (torch>=2.3) is then already satisfied and pip pulls nothing bigger.
    "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
    "$VENV/bin/python" -m pip install --quiet -e ".[$EXTRAS]"
    echo "$want" > "$stamp"
fi

export PYTHONHASHSEED=0
case "${1:-}" in
    main)
        shift
        exec "$VENV/bin/instruct-env" pipeline "$@"
        ;;
    test)
        shift
        "$VENV/bin/python" -m ruff check instruct_env agents tests benchmarks
        "$VENV/bin/python" -m mypy  # instruct_env/ and agents/ (settings in pyproject.toml)
        exec "$VENV/bin/python" -m pytest -q "$@"
        ;;
    *)
        echo "usage: bash run.sh main|test [args...]" >&2
        exit 2
        ;;
esac
