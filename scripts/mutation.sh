#!/usr/bin/env bash
# Mutation testing of the core modules with mutmut 3 (pip install mutmut==3.8.1), against the fast test layer.
#
#   scripts/mutation.sh                 # every group below, one after another
#   scripts/mutation.sh losses http     # only these groups
#   MUTANTS='tinydistill.methods.registry.x_rationale_tasks*' scripts/mutation.sh objectives   # some functions
#
# Each group mutates its module(s) and runs only the fast tests (-m "not slow") of the files that exercise them,
# in a scratch copy of the repo (build/mutation/<group>/; mutmut writes its mutants/ there, never into src/).
# One worker (WORKERS=n for more), niced, one thread per process: it is meant for a shared 2-core machine.
# Per group it prints mutmut's summary and writes build/mutation/<group>.txt (`mutmut results --all true`);
# `cd build/mutation/<group> && mutmut show <name>` prints one mutant's diff.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
# absolute: each group runs from its scratch folder, where a relative PYTHON=.venv/bin/python would not resolve
MUTMUT=$(realpath "${MUTMUT:-$(dirname "$(command -v "$PY")")/mutmut}")
OUT=${MUTATION_DIR:-$ROOT/build/mutation}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false

declare -A MODULES TESTS
# per group: the module(s) mutated and the test files whose fast tests exercise them (mutmut runs, per mutant,
# only the tests that covered the mutated function); no file whose fast tests train for minutes
MODULES[losses]="src/tinydistill/losses.py"
TESTS[losses]="tests/test_losses.py tests/test_distill_losses.py"
MODULES[objectives]="src/tinydistill/methods/registry.py src/tinydistill/methods/choice_kd.py"
TESTS[objectives]="tests/test_methods.py tests/test_distill_losses.py tests/test_shortcut.py tests/test_shared_encoder.py tests/test_reproduce.py tests/test_joint_rationale_pass.py tests/test_masked_rationale.py"
MODULES[checkpoint]="src/tinydistill/training/checkpoint.py"
TESTS[checkpoint]="tests/test_checkpoint_atomic.py"
MODULES[data]="src/tinydistill/data/records.py src/tinydistill/data/loaders.py"
TESTS[data]="tests/test_data.py tests/test_cli_errors.py tests/test_newcomer_mistakes.py tests/test_openqa.py tests/test_eval_split.py"
MODULES[rationales]="src/tinydistill/data/rationales.py"
TESTS[rationales]="tests/test_data.py"
MODULES[cache]="src/tinydistill/teachers/cache.py"
TESTS[cache]="tests/test_cache.py"
MODULES[http]="src/tinydistill/teachers/http.py"
TESTS[http]="tests/test_http_teacher.py"
ORDER=(losses rationales checkpoint cache data http objectives)

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=("${ORDER[@]}")
mkdir -p "$OUT"
for g in "${groups[@]}"; do
  [ -n "${MODULES[$g]:-}" ] || { echo "unknown group $g; one of: ${ORDER[*]}" >&2; exit 2; }
  work=$OUT/$g
  rm -rf "$work" && mkdir -p "$work"
  cp -r "$ROOT/src" "$ROOT/tests" "$ROOT/pyproject.toml" "$work/"
  find "$work" -name __pycache__ -prune -exec rm -rf {} +
  {
    echo "[mutmut]"
    echo "source_paths=src/"
    echo "only_mutate=$(echo "${MODULES[$g]}" | sed 's/ /\n\t/g')"
    echo "pytest_add_cli_args_test_selection=$(echo "${TESTS[$g]}" | sed 's/ /\n\t/g')"
    printf 'pytest_add_cli_args=-m\n\tnot slow\n\t-p\n\tno:cacheprovider\n\t-q\n'
    # torch's thread pool does not survive a fork: fork each mutant from a server that has only imported
    echo "process_isolation=forkserver"
    # a mutant's time limit is 15x its tests' time plus this: the fork and pytest's own start, slow on a busy host
    echo "timeout_constant=30"
  } > "$work/setup.cfg"
  start=$(date +%s)
  (cd "$work" && nice -n 10 "$MUTMUT" run --max-children "${WORKERS:-1}" ${MUTANTS:-} > run.log 2>&1) || true
  (cd "$work" && "$MUTMUT" results --all true > "$OUT/$g.txt" 2>&1) || true
  secs=$(( $(date +%s) - start ))
  killed=$(grep -c ': killed' "$OUT/$g.txt" || true)
  survived=$(grep -c ': survived' "$OUT/$g.txt" || true)
  other=$(grep -vc ': killed\|: survived' "$OUT/$g.txt" || true)
  echo "$g: killed $killed, survived $survived, other (no tests / timeout / suspicious) $other, ${secs}s"
done
