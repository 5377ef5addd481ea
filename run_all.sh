#!/usr/bin/env bash
# run_all.sh: one command reproduces every table of the three papers (MPM, OmniJet-alpha, HEP-JEPA).
#
#   bash run_all.sh                      # profile mini: offline simulated data, the claims' tables at reduced scale (< 2 h, 2 cores)
#   bash run_all.sh --profile smoke      # minutes; what CI runs
#   bash run_all.sh --profile paper --gpus 4             # real data (python -m common.data.download ...), paper configs
#   bash run_all.sh --profile paper --gpus 8 --nnodes 2 --node-rank R --rdzv-endpoint node0:29500   # on every node
#
# Options:
#   --profile smoke|mini|paper   sizes and configs (default mini)
#   --only M[,M...]              run only these methods (mpm, omnijet, hepjepa); data steps they need still run
#   --table ID                   run only what produces one table (e.g. mpm.v1_jetclass) and the steps it depends on
#   --data-dir DIR               datasets (default data/sim-smoke | data/sim | data/real for smoke | mini | paper)
#   --out-dir DIR                run outputs, logs and status (default runs/<profile>)
#   --results-dir DIR            where RESULTS.md and its plots go (default results/<profile>)
#   --workers K                  simulation processes and data-loader workers (default: number of CPUs)
#   --jobs J                     steps run at once, each a process with --threads threads (default: mini nproc /
#                                threads, smoke and paper 1); a step waits for the data and for the steps it names in
#                                --after; a failure skips the steps of its method that have not started yet
#   --threads T                  torch intra-op threads per training process ($JETFM_THREADS; default 1 for smoke and
#                                mini: on a loaded 2-core machine two threads made the mini models 4-9x slower, see
#                                BENCHMARKS.md; paper: the cores shared among the processes of a node)
#   --force                      redo every selected step (their run directories are deleted first)
#   --force-data                 also re-simulate the data (smoke/mini only; deletes the simulated files)
#   --gpus G  --nnodes N  --rdzv-endpoint HOST:PORT  --rdzv-id ID  --node-rank R
#                                paper profile: training steps are launched with torchrun over G GPUs per node;
#                                with several nodes (shared file system) only node 0 runs the single-process steps,
#                                the others wait for their done.json
#   --pretrain-runs N            pretraining runs behind each claim about a pretrained method (seeds 0..N-1; default
#                                3 for smoke and mini, 1 for paper, whose verdicts then read inconclusive: "one
#                                pretraining run"); runs 1..N-1 are fine-tuned with one seed each
#   --stop-on-error              stop at the first failed step (default: skip the rest of that method, go on)
#   --list                       print the steps, their status and commands, run nothing
#
# After the methods' steps: "Which pretraining?" (python -m common.results.compare over the methods' embed steps; every profile)
# and RESULTS.md (python -m common.results.report), both rebuilt on every run.
#
# Each step is skipped when its output directory holds done.json (method scripts write it when they finish; run_all
# writes it for steps whose command does not). An interrupted run therefore resumes where it stopped: finished steps
# are skipped and an unfinished training step resumes from its checkpoint. Every step logs to <out>/logs/<step>.log
# and its status to <out>/status.tsv; a progress line per step shows the elapsed time and the next step.
#
# ------------------------------------------------------------------------------------------------------------------
# HOW A METHOD PLUGS IN (the one place a method's steps live): <method>/run_steps.sh
#
#   It is sourced by run_all.sh and defines a function <method>_steps that declares the method's steps in order:
#
#     mpm_steps() {
#       need_data jetclass jetclass_atlas=QCD,Tbqq  # datasets read: jetclass jetclass_atlas toptagging qg btag (=classes: subset)
#       step tokenizer -- $PY -m mpm.train_tokenizer --config $CFG/vqvae.yaml --out $OUT/tokenizer data.root=$JETCLASS
#       step pretrain  -- $PY -m mpm.pretrain --config $CFG/pretrain.yaml --out $OUT/pretrain data.root=$JETCLASS
#       step finetune --tables mpm.v1_jetclass -- $PY -m mpm.finetune --config $CFG/finetune.yaml --out $OUT/finetune ...
#       step tables --always --tables mpm.v1_jetclass -- $PY1 -m mpm.tables --runs $OUT --out $OUT/tables
#     }
#
#   step NAME [--tables ID,ID] [--after NAME,NAME] [--always] -- COMMAND...
#     NAME        unique within the method; the step id is <method>/NAME and its log <out>/logs/<method>__NAME.log
#     --tables    table ids (common/results/published.yaml) this step's result files feed; used by --table and by the
#                 RESULTS.md "missing (step X failed)" flags
#     --after     steps this one needs; default: every earlier step of the method that has no --tables
#                 (tokenisers, pretraining), which is what --table uses to pick dependencies
#     --always    never skipped (cheap steps such as table writers)
#     COMMAND     words expanded when declared; its output directory is the value after --out (done.json there)
#
#   Variables available when <method>_steps runs:
#     PROFILE   smoke | mini | paper
#     CFG       <method>/configs/<profile> for smoke and mini, <method>/configs for paper
#     OUT       <out-dir>/<method>  (put each step's --out under it)
#     JETCLASS JETCLASS_ATLAS TOPTAGGING QG BTAG   dataset roots to pass as data.root=... overrides
#     WORKERS   number of workers; PY: `python` or the torchrun launcher (use `$PY -m pkg.module`); PY1: always python
#   A failing step stops the rest of its method (the other methods go on); RESULTS.md flags what is missing.
# ------------------------------------------------------------------------------------------------------------------
set -uo pipefail
{ # the whole script is one block, parsed before it runs: editing this file (git pull) cannot corrupt a running job

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CALLER_PWD="$PWD"

# Where the method step files are looked up (tests point this at fake methods).
STEPS_ROOT="${RUN_ALL_STEPS_ROOT:-$ROOT}"
ALL_METHODS="${RUN_ALL_METHODS:-mpm omnijet hepjepa}"

PROFILE=mini; ONLY=""; TABLE=""; DATA_DIR=""; OUT_DIR=""; RESULTS_DIR=""; WORKERS=""; THREADS=""; JOBS=""
PRETRAIN_RUNS=""; FORCE=0; FORCE_DATA=0; GPUS=1; NNODES=1; NODE_RANK=0; RDZV_ENDPOINT=""; RDZV_ID="jetfm"; STOP_ON_ERROR=0; LIST_ONLY=0

die() { echo "run_all.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in  # an option that takes a value must get one (not the end of the line, not the next --option)
    --profile|--only|--table|--data-dir|--out-dir|--results-dir|--workers|--threads|--jobs|--gpus|--nnodes|\
    --rdzv-endpoint|--rdzv-id|--node-rank|--pretrain-runs)
      [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || die "$1 needs a value (see bash run_all.sh --help)" ;;
  esac
  case "$1" in
    --profile) PROFILE="$2"; shift 2 ;;
    --only) ONLY="${2//,/ }"; shift 2 ;;
    --table) TABLE="$2"; shift 2 ;;
    --data-dir) DATA_DIR="$2"; shift 2 ;;
    --out-dir) OUT_DIR="$2"; shift 2 ;;
    --results-dir) RESULTS_DIR="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    --force-data) FORCE_DATA=1; shift ;;
    --gpus) GPUS="$2"; shift 2 ;;
    --nnodes) NNODES="$2"; shift 2 ;;
    --rdzv-endpoint) RDZV_ENDPOINT="$2"; shift 2 ;;
    --rdzv-id) RDZV_ID="$2"; shift 2 ;;
    --node-rank) NODE_RANK="$2"; shift 2 ;;
    --pretrain-runs) PRETRAIN_RUNS="$2"; shift 2 ;;
    --stop-on-error) STOP_ON_ERROR=1; shift ;;
    --list) LIST_ONLY=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see bash run_all.sh --help)" ;;
  esac
done

case "$PROFILE" in smoke|mini|paper) ;; *) die "--profile must be smoke, mini or paper, got '$PROFILE'" ;; esac
# Every number a user gives (options and RUN_ALL_* variables) is checked against a regex before any arithmetic: bash
# evaluates an array index such as X[$(cmd)] inside $((...)) and [[ -gt ]], so an unchecked value would run cmd.
shown() { printf '%q' "$1"; }  # a value as one printable line (a newline or a quote cannot break the message)
whole() {  # name value min [max]: die unless value is a decimal whole number in [min, max] (at most 9 digits)
  [[ "$2" =~ ^(0|[1-9][0-9]{0,8})$ ]] || die "$1 must be a whole number >= $3 (digits only, at most 9), got $(shown "$2")"
  (( $2 >= $3 )) || die "$1 must be a whole number >= $3, got $2"
  [[ -z "${4:-}" ]] || (( $2 <= $4 )) || die "$1 must be at most $4, got $2"
}
whole --gpus "$GPUS" 1; whole --nnodes "$NNODES" 1; whole --node-rank "$NODE_RANK" 0 $((NNODES - 1))
[[ -z "$WORKERS" ]] || whole --workers "$WORKERS" 1
[[ -z "$THREADS" ]] || whole --threads "$THREADS" 1
[[ -z "$JOBS" ]] || whole --jobs "$JOBS" 1
[[ -z "$PRETRAIN_RUNS" ]] || whole --pretrain-runs "$PRETRAIN_RUNS" 1 100
[[ -n "$PRETRAIN_RUNS" ]] || { [[ "$PROFILE" == paper ]] && PRETRAIN_RUNS=1 || PRETRAIN_RUNS=3; }
RSEEDS=$(seq -s ' ' 1 $((PRETRAIN_RUNS - 1)))  # the extra pretraining seeds each method's run_steps.sh schedules
for v in RUN_ALL_SIM_JETCLASS RUN_ALL_SIM_ATLAS RUN_ALL_SIM_TOP RUN_ALL_SIM_QG RUN_ALL_SIM_BTAG; do
  [[ -z "${!v:-}" ]] || whole "$v" "${!v}" 1
done
[[ -z "${RUN_ALL_POLL_S:-}" || ( "$RUN_ALL_POLL_S" =~ ^[0-9]{1,6}(\.[0-9]{1,3})?$ && "$RUN_ALL_POLL_S" =~ [1-9] ) ]] \
  || die "RUN_ALL_POLL_S must be seconds > 0 (e.g. 30 or 0.5), got $(shown "$RUN_ALL_POLL_S")"
[[ -z "${RUN_ALL_SIM_SEED:-}" ]] || whole RUN_ALL_SIM_SEED "$RUN_ALL_SIM_SEED" 0 999999990
if [[ -n "${RUN_ALL_COMPARE_FINETUNE_GRID:-}" ]]; then
  IFS=',' read -ra _grid <<< "$RUN_ALL_COMPARE_FINETUNE_GRID"
  [[ ${#_grid[@]} -gt 0 && "$RUN_ALL_COMPARE_FINETUNE_GRID" != *, ]] \
    || die "RUN_ALL_COMPARE_FINETUNE_GRID must be whole numbers separated by commas, got $(shown "$RUN_ALL_COMPARE_FINETUNE_GRID")"
  for g in "${_grid[@]}"; do whole "RUN_ALL_COMPARE_FINETUNE_GRID (each value)" "$g" 1; done
fi
# Words that end up in commands: names only (no spaces, quotes or glob characters)
[[ -z "$RDZV_ENDPOINT" || "$RDZV_ENDPOINT" =~ ^[A-Za-z0-9._-]+:[0-9]{1,5}$ || "$RDZV_ENDPOINT" =~ ^\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}$ ]] \
  || die "--rdzv-endpoint must be HOST:PORT, got $(shown "$RDZV_ENDPOINT")"
[[ "$RDZV_ID" =~ ^[A-Za-z0-9._-]+$ ]] || die "--rdzv-id must be letters, digits, '.', '_' or '-', got $(shown "$RDZV_ID")"
[[ "$ONLY" =~ ^[A-Za-z0-9_\ ]*$ ]] || die "--only must be method names separated by commas, got $(shown "$ONLY")"
# status.tsv is one line per step, tab-separated: a directory whose name holds a newline or a tab cannot be recorded
for _o in "--data-dir:$DATA_DIR" "--out-dir:$OUT_DIR" "--results-dir:$RESULTS_DIR"; do
  [[ "${_o#*:}" != *$'\n'* && "${_o#*:}" != *$'\t'* ]] \
    || die "${_o%%:*} $(shown "${_o#*:}"): a path with a newline or tab is not supported (status.tsv is line-based); rename it"
done
for m in $ONLY; do [[ " $ALL_METHODS " == *" $m "* ]] || die "--only: unknown method '$m' (known: $ALL_METHODS)"; done
METHODS="${ONLY:-$ALL_METHODS}"

# ---------------------------------------------------------------------------------------------- profile sizes
# Simulated jets per profile. Simulation runs at about 75-170 jets/s per core (BENCHMARKS.md), so mini's ~38k jets
# take a few minutes on 2 cores; the rest of the 2 hours is training.
case "$PROFILE" in
  smoke) SIM_JETCLASS=60;   SIM_ATLAS=30;  SIM_TOP=300;  SIM_QG=300;  SIM_BTAG=60;   DEFAULT_DATA=data/sim-smoke ;;
  mini)  SIM_JETCLASS=3000; SIM_ATLAS=1000; SIM_TOP=3000; SIM_QG=3000; SIM_BTAG=2000; DEFAULT_DATA=data/sim ;;
  paper) SIM_ATLAS=20000; DEFAULT_DATA=data/real ;;  # only the second-detector sample is simulated at paper scale
esac
# Environment overrides: RUN_ALL_SIM_JETCLASS (jets per class), RUN_ALL_SIM_ATLAS, RUN_ALL_SIM_TOP, RUN_ALL_SIM_QG,
# RUN_ALL_SIM_BTAG (jets per flavour), RUN_ALL_SIM_SEED.
SIM_JETCLASS="${RUN_ALL_SIM_JETCLASS:-${SIM_JETCLASS:-0}}"; SIM_ATLAS="${RUN_ALL_SIM_ATLAS:-$SIM_ATLAS}"
SIM_TOP="${RUN_ALL_SIM_TOP:-${SIM_TOP:-0}}"; SIM_QG="${RUN_ALL_SIM_QG:-${SIM_QG:-0}}"
SIM_BTAG="${RUN_ALL_SIM_BTAG:-${SIM_BTAG:-0}}"
SIM_SEED="${RUN_ALL_SIM_SEED:-1}"
# mini simulates its test splits from a seed derivation no earlier run used (common.simulate --test-seed: file seeds
# (seed, "test", ...)), so that no choice made on an earlier run's jets saw these test jets (docs/splits.md).
# RUN_ALL_SIM_TEST_SEED overrides it; quark-gluon is one file set cut into splits by fraction and keeps one seed.
TEST_SEED_OPT=()
[[ "$PROFILE" == mini ]] && TEST_SEED_OPT=(--test-seed "${RUN_ALL_SIM_TEST_SEED:-$SIM_SEED}")
# "Which pretraining?" (common/results/compare.py): the compare set, the data overrides of every method's embed step (all
# classes of JetClass; paper: one file per class of each split, 1M training jets, of which the labelled subsets are
# drawn), and the labelled jets per class at which every backbone is also fine-tuned (common/results/compare.yaml's one
# recipe, 3 seeds, pretrained and random init); the frozen probe runs at every grid point (10 / 100 / 1000 per class).
# Mini's default run has the frozen probe only: its fine-tuned column (8 backbones x 3 seeds at 100 per class, 1-1.5
# step-minutes each on one core, ~25 step-minutes with the extra pretraining runs) decides no claim and does not fit the
# 2-hour default run (BENCHMARKS.md, "The default run within 2 hours"); RUN_ALL_COMPARE_FINETUNE_GRID=100 adds it.
COMPARE_DATA=(data.classes=null "data.train=train/*.root" "data.val=val/*.root" "data.test=test/*.root")
case "$PROFILE" in
  smoke) COMPARE_FINETUNE_GRID=10 ;;
  mini) COMPARE_FINETUNE_GRID="" ;;
  paper) COMPARE_FINETUNE_GRID=10,100,1000
         COMPARE_DATA=(data.classes=null "data.train=train_100M/*_000.root" "data.val=val_5M/*_120.root"
                       "data.test=test_20M/*_100.root") ;;
esac
COMPARE_FINETUNE_GRID="${RUN_ALL_COMPARE_FINETUNE_GRID:-$COMPARE_FINETUNE_GRID}"
# Paths given on the command line are relative to where run_all.sh was called; defaults to the repository root.
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$CALLER_PWD/$1" ;; esac; }
cd "$ROOT"
DATA="$( [[ -n "$DATA_DIR" ]] && abspath "$DATA_DIR" || echo "$ROOT/$DEFAULT_DATA")"
OUT_DIR="$( [[ -n "$OUT_DIR" ]] && abspath "$OUT_DIR" || echo "$ROOT/runs/$PROFILE")"
RESULTS_DIR="$( [[ -n "$RESULTS_DIR" ]] && abspath "$RESULTS_DIR" || echo "$ROOT/results/$PROFILE")"
WORKERS="${WORKERS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 2)}"
whole --workers "$WORKERS" 1
# Every directory option is created and checked before anything is written: a folder that cannot be made or written
# is one line and exit 2 (never an empty path, which would put status.tsv and the logs at /).
usable_dir() {  # option dir need_write -> the absolute path, or die
  local opt=$1 d=$2 err
  err="$(mkdir -p -- "$d" 2>&1)" || die "$opt $d: cannot create it (${err##*: })"
  [[ -d "$d" && -r "$d" && -x "$d" ]] || die "$opt $d: not a readable directory"
  if [[ $3 == 1 ]]; then
    local probe="$d/.run_all_write_test.$$"
    { : > "$probe"; } 2>/dev/null && rm -f -- "$probe" || die "$opt $d: not writable"
  fi
  (cd -- "$d" && pwd) || die "$opt $d: cannot enter it"
}
OUT_DIR="$(usable_dir --out-dir "$OUT_DIR" 1)" || exit 2
usable_dir --out-dir "$OUT_DIR/logs" 1 > /dev/null || exit 2
# paper data may sit on a read-only disk (only its simulated second-detector sample is written, checked by that step)
DATA="$(usable_dir --data-dir "$DATA" "$( [[ "$PROFILE" == paper ]] && echo 0 || echo 1 )")" || exit 2
RESULTS_DIR="$(usable_dir --results-dir "$RESULTS_DIR" 1)" || exit 2
[[ -n "$OUT_DIR" && -n "$DATA" && -n "$RESULTS_DIR" ]] || die "internal: an empty directory path"

if [[ "$PROFILE" == paper ]]; then
  JETCLASS="$DATA/JetClass/Pythia"; TOPTAGGING="$DATA/toptagging"; QG="$DATA/qg"; JETCLASS_ATLAS="$DATA/sim/jetclass_atlas"
  BTAG="$DATA/btag"
  CFG_SUB=""
else
  JETCLASS="$DATA/jetclass"; TOPTAGGING="$DATA/toptagging"; QG="$DATA/qg"; JETCLASS_ATLAS="$DATA/jetclass_atlas"
  BTAG="$DATA/btag"
  CFG_SUB="/$PROFILE"
fi

PY1=python
if [[ "$PROFILE" == paper && ( "$GPUS" -gt 1 || "$NNODES" -gt 1 ) ]]; then
  PY="torchrun --nproc_per_node=$GPUS --nnodes=$NNODES"
  if [[ "$NNODES" -gt 1 ]]; then
    [[ -n "$RDZV_ENDPOINT" ]] || die "--nnodes $NNODES needs --rdzv-endpoint HOST:PORT (the same on every node)"
    PY="$PY --rdzv_backend=c10d --rdzv_endpoint=$RDZV_ENDPOINT --rdzv_id=$RDZV_ID"
  else
    PY="$PY --standalone"
  fi
else
  PY=python
fi
export PYTHONUNBUFFERED=1
[[ -z "$THREADS" && "$PROFILE" != paper ]] && THREADS=1
if [[ -n "$THREADS" ]]; then
  [[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "--threads must be an integer >= 1, got '$THREADS'"
  export JETFM_THREADS="$THREADS"
fi
if [[ -z "$JOBS" ]]; then
  if [[ "$PROFILE" == mini ]]; then JOBS=$(( $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 1) / THREADS )); ((JOBS >= 1)) || JOBS=1; else JOBS=1; fi
fi
whole --jobs "$JOBS" 1
[[ $JOBS -gt 1 && ( $NNODES -gt 1 || $GPUS -gt 1 ) ]] && die "--jobs > 1 runs steps side by side on one machine; not with --gpus/--nnodes > 1"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# ---------------------------------------------------------------------------------------------- step registry
S_ID=(); S_METHOD=(); S_CMD=(); S_OUT=(); S_TABLES=(); S_AFTER=(); S_ALWAYS=(); S_DATA=()
NEEDED_DATA=" "
CUR_METHOD=""

declare -A DATA_CLASSES=()  # dataset -> comma-separated class subset to simulate ("" = all classes)
need_data() { local arg d cls c; for arg in "$@"; do
  d="${arg%%=*}"; cls=""; [[ "$arg" == *=* ]] && cls="${arg#*=}"
  case "$d" in jetclass|jetclass_atlas|toptagging|qg|btag) ;; *) die "need_data: unknown dataset '$d'" ;; esac
  if [[ "$NEEDED_DATA" != *" $d "* ]]; then
    NEEDED_DATA="$NEEDED_DATA$d "; DATA_CLASSES[$d]="$cls"
  elif [[ -z "$cls" ]]; then
    DATA_CLASSES[$d]=""  # somebody needs every class
  elif [[ -n "${DATA_CLASSES[$d]}" ]]; then
    for c in ${cls//,/ }; do [[ ",${DATA_CLASSES[$d]}," == *",$c,"* ]] || DATA_CLASSES[$d]="${DATA_CLASSES[$d]},$c"; done
  fi
done; }
classes_opt() { [[ -n "${DATA_CLASSES[$1]:-}" ]] && echo "--classes ${DATA_CLASSES[$1]}"; }

step() {
  local name="$1"; shift
  local tables="" after="__default__" always=0 is_data=0
  while [[ $# -gt 0 && "$1" != "--" ]]; do
    case "$1" in
      --tables) tables="$2"; shift 2 ;;
      --after) after="$2"; shift 2 ;;
      --always) always=1; shift ;;
      --data) is_data=1; shift ;;
      *) die "step $CUR_METHOD/$name: unknown option '$1' (expected --tables, --after, --always, then -- COMMAND)" ;;
    esac
  done
  [[ "${1:-}" == "--" ]] || die "step $CUR_METHOD/$name: missing '--' before the command"
  shift
  [[ $# -gt 0 ]] || die "step $CUR_METHOD/$name: empty command"
  local id="$CUR_METHOD/$name" s
  for s in "${S_ID[@]:-}"; do [[ "$s" != "$id" ]] || die "step $id declared twice"; done
  local out="" prev=""
  for a in "$@"; do
    [[ "$prev" == "--out" ]] && out="$a"
    [[ "$a" == --out=* ]] && out="${a#--out=}"
    prev="$a"
  done
  if [[ "$after" == "__default__" ]]; then  # every earlier untagged step of this method
    after=""
    local i
    for i in "${!S_ID[@]}"; do
      [[ "${S_METHOD[$i]}" == "$CUR_METHOD" && -z "${S_TABLES[$i]}" && "${S_ALWAYS[$i]}" == 0 ]] && after="$after,${S_ID[$i]#*/}"
    done
    after="${after#,}"
  fi
  local cmd="" w
  for w in "$@"; do  # shell-quote only the words that need it, so --list shows readable commands
    if [[ "$w" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then cmd+="$w "; else cmd+="$(printf '%q' "$w") "; fi
  done
  S_ID+=("$id"); S_METHOD+=("$CUR_METHOD"); S_CMD+=("${cmd% }"); S_OUT+=("$out")
  S_TABLES+=("$tables"); S_AFTER+=("$after"); S_ALWAYS+=("$always"); S_DATA+=("$is_data")
}

# Collect the methods' steps first (so the data steps they need are known), then put the data steps in front.
register_methods() {
  local m f
  S_ID=(); S_METHOD=(); S_CMD=(); S_OUT=(); S_TABLES=(); S_AFTER=(); S_ALWAYS=(); S_DATA=(); NEEDED_DATA=" "
  DATA_CLASSES=()
  for m in $1; do
    f="$STEPS_ROOT/$m/run_steps.sh"
    if [[ ! -f "$f" ]]; then
      [[ -n "${2:-}" ]] || echo "run_all.sh: $m has no $m/run_steps.sh yet; its tables will be marked not run" >&2
      continue
    fi
    # shellcheck disable=SC1090
    source "$f"
    declare -F "${m}_steps" >/dev/null || die "$f must define a function ${m}_steps"
    CUR_METHOD="$m"; CFG="$m/configs$CFG_SUB"; OUT="$OUT_DIR/$m"
    "${m}_steps"
  done
}
register_methods "$METHODS" quiet
if [[ -n "$TABLE" ]]; then  # keep only the methods that have a step declaring this table
  TMETHODS=""
  for i in "${!S_ID[@]}"; do
    [[ ",${S_TABLES[$i]}," == *",$TABLE,"* && " $TMETHODS " != *" ${S_METHOD[$i]} "* ]] && TMETHODS="$TMETHODS ${S_METHOD[$i]}"
  done
  [[ -n "$TMETHODS" ]] || die "--table $TABLE: no step declares it (see --tables in <method>/run_steps.sh)"
  METHODS="${TMETHODS# }"
fi
register_methods "$METHODS"
M_COUNT=${#S_ID[@]}

CUR_METHOD="data"; CFG=""; OUT="$OUT_DIR/data"
if [[ "$PROFILE" == paper ]]; then
  for d in jetclass toptagging qg btag; do
    [[ "$NEEDED_DATA" == *" $d "* ]] || continue
    case "$d" in
      jetclass) root="$JETCLASS"; probe="train_100M" ;;
      toptagging) root="$TOPTAGGING"; probe="train.h5" ;;
      qg) root="$QG"; probe="QG_jets.npz" ;;
      btag) root="$BTAG"; probe="validate.root" ;;  # the Zenodo ROOT files (python -m common.data.download btag)
    esac
    # Locating real data: a cheap check that runs every time (--always), so a missing dataset fails early and clearly.
    # The script is a fixed string; the paths travel as its arguments ($1 $2 $3), so no quote or $(...) in a
    # directory name is ever parsed as shell code.
    step "locate_$d" --always --data -- bash -c 'test -e "$1" || { echo "missing $1: run python -m common.data.download $2 --out $3" >&2; exit 1; }' \
      locate "$root/$probe" "$d" "$DATA"
  done
  [[ "$NEEDED_DATA" == *" jetclass_atlas "* ]] && step sim_jetclass_atlas --data -- python -m common.simulate jetclass \
    --detector atlas --jets-per-class "$SIM_ATLAS" $(classes_opt jetclass_atlas) --out "$JETCLASS_ATLAS" \
    --workers "$WORKERS" --seed $((SIM_SEED + 1))
else
  [[ "$NEEDED_DATA" == *" jetclass "* ]] && step sim_jetclass --data -- python -m common.simulate jetclass \
    --jets-per-class "$SIM_JETCLASS" $(classes_opt jetclass) --out "$JETCLASS" --workers "$WORKERS" --seed "$SIM_SEED" \
    "${TEST_SEED_OPT[@]}"
  [[ "$NEEDED_DATA" == *" jetclass_atlas "* ]] && step sim_jetclass_atlas --data -- python -m common.simulate jetclass \
    --detector atlas --jets-per-class "$SIM_ATLAS" $(classes_opt jetclass_atlas) --out "$JETCLASS_ATLAS" \
    --workers "$WORKERS" --seed $((SIM_SEED + 1)) "${TEST_SEED_OPT[@]}"
  [[ "$NEEDED_DATA" == *" toptagging "* ]] && step sim_toptagging --data -- python -m common.simulate toptagging \
    --jets "$SIM_TOP" --out "$TOPTAGGING" --workers "$WORKERS" --seed $((SIM_SEED + 2)) "${TEST_SEED_OPT[@]}"
  [[ "$NEEDED_DATA" == *" qg "* ]] && step sim_qg --data -- python -m common.simulate qg \
    --jets "$SIM_QG" --out "$QG" --workers "$WORKERS" --seed $((SIM_SEED + 3))
  [[ "$NEEDED_DATA" == *" btag "* ]] && step sim_btag --data -- python -m common.simulate btag \
    --jets-per-flavour "$SIM_BTAG" --out "$BTAG" --workers "$WORKERS" --seed $((SIM_SEED + 4)) "${TEST_SEED_OPT[@]}"
fi
D_END=${#S_ID[@]}
# Physics check of the simulated JetClass sample (mass peaks, substructure plots); runs after the methods so that a
# failure here stops nothing else. Its PNGs land in <out>/data_check/ and are copied next to RESULTS.md.
CUR_METHOD="data_check"
if [[ "$PROFILE" != paper && "$NEEDED_DATA" == *" jetclass "* ]]; then
  step validate_jetclass --after "" -- python -m common.simulate validate "$JETCLASS" --max-jets 2000 \
    --out "$OUT_DIR/data_check/jetclass"
fi
# BTag calibration (track-origin fractions, vertex-sharing pairs, d0-significance order); mini only: the smoke sample
# is too small for its tolerances
if [[ "$PROFILE" == mini && "$NEEDED_DATA" == *" btag "* ]]; then
  step validate_btag --after "" -- python -m common.simulate validate "$BTAG" --out "$OUT_DIR/data_check/btag"
fi
# Order: data steps (declared after the methods' steps) first, then the methods, then the data check.
N=${#S_ID[@]}
order=()
for ((i = M_COUNT; i < D_END; i++)); do order+=("$i"); done
for ((i = 0; i < M_COUNT; i++)); do order+=("$i"); done
for ((i = D_END; i < N; i++)); do order+=("$i"); done

# ---------------------------------------------------------------------------------------------- selection
declare -A SELECTED=()
for i in "${order[@]}"; do SELECTED[$i]=1; done
if [[ -n "$TABLE" ]]; then
  # Keep the steps tagged with the table, the --always steps of its method, and (transitively) their --after steps.
  declare -A KEEP=()
  for i in "${order[@]}"; do
    [[ "${S_DATA[$i]}" == 1 ]] && KEEP[$i]=1
    [[ ",${S_TABLES[$i]}," == *",$TABLE,"* ]] && KEEP[$i]=1
  done
  changed=1
  while [[ $changed == 1 ]]; do
    changed=0
    for i in "${!KEEP[@]}"; do
      # a table writer (--always) runs after its method's other steps anyway: its --after only orders it, and
      # following it would pull in every untagged step (HEP-JEPA's three pretrainings for the shortcut ablation)
      [[ "${S_ALWAYS[$i]}" == 1 ]] && continue
      IFS=',' read -ra deps <<< "${S_AFTER[$i]}"
      for d in "${deps[@]}"; do
        [[ -z "$d" ]] && continue
        for j in "${order[@]}"; do
          if [[ "${S_ID[$j]}" == "${S_METHOD[$i]}/$d" && -z "${KEEP[$j]:-}" ]]; then KEEP[$j]=1; changed=1; fi
        done
      done
    done
  done
  for i in "${order[@]}"; do [[ -n "${KEEP[$i]:-}" ]] || unset "SELECTED[$i]"; done
fi
RUN=()
for i in "${order[@]}"; do [[ -n "${SELECTED[$i]:-}" ]] && RUN+=("$i"); done
UNSELECTED=()
for i in "${order[@]}"; do [[ -n "${SELECTED[$i]:-}" ]] || UNSELECTED+=("$i"); done

# ---------------------------------------------------------------------------------------------- helpers
T0=$(date +%s)
hms() { local s=$1; printf '%02d:%02d:%02d' $((s / 3600)) $((s % 3600 / 60)) $((s % 60)); }
dur() { local s=$1; if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi; }
say() { echo "[run_all $(hms $(( $(date +%s) - T0 )))] $*"; }
logfile() { echo "$OUT_DIR/logs/${1//\//__}.log"; }
rel() {  # a path inside the out-dir relative to it (the run folder can be moved or copied); others unchanged
  case "$1" in "$OUT_DIR"/*) echo "${1#"$OUT_DIR"/}" ;; *) echo "$1" ;; esac
}
record() {  # step status seconds; columns: step status seconds log tables always|step out-dir (paths: rel)
  local i=$1
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${S_ID[$i]}" "$2" "$3" "$(rel "$(logfile "${S_ID[$i]}")")" "${S_TABLES[$i]}" \
    "$( [[ "${S_ALWAYS[$i]}" == 1 ]] && echo always || echo step )" "$(rel "${S_OUT[$i]}")" >> "$OUT_DIR/status.tsv"
}
inside() { case "$(realpath -m "$1")/" in "$(realpath -m "$2")"/*) return 0 ;; esac; return 1; }

# Is step i done? Its --out directory holds done.json; when run_all wrote that file (commands that do not write one,
# e.g. the simulation), the recorded command must also match, so changing the sizes reruns the step. The --workers
# value is not compared: it changes how many processes simulate, never the jets (each file's seed derives from
# (seed, dataset, class, file index); tests/test_simulate.py::test_jetclass_deterministic_for_fixed_seed).
is_done() {
  local i=$1 out="${S_OUT[$1]}"
  [[ -n "$out" && -f "$out/done.json" ]] || return 1
  python - "$out/done.json" "${S_CMD[$i]}" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    sys.exit(1)  # unreadable done.json: not done
import re
same = lambda c: re.sub(r" --workers [0-9]+", "", c) if isinstance(c, str) else c
if isinstance(d, dict) and d.get("by") == "run_all.sh" and same(d.get("command")) != same(sys.argv[2]):
    sys.exit(1)
sys.exit(0)
EOF
}

mark_done() {
  local i=$1 out="${S_OUT[$1]}"
  [[ -n "$out" && -d "$out" && ! -f "$out/done.json" ]] || return 0
  python - "$out/done.json" "${S_CMD[$i]}" "${S_ID[$i]}" <<'EOF'
import json, os, sys, time
path, cmd, step = sys.argv[1:4]
with open(path + ".tmp", "w") as f:
    json.dump({"by": "run_all.sh", "step": step, "command": cmd, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}, f)
os.replace(path + ".tmp", path)
EOF
}

next_after() {  # name of the next selected step after position k in RUN
  local k=$1
  if ((k + 1 < ${#RUN[@]})); then echo "${S_ID[${RUN[$((k + 1))]}]}"; else echo "tables (RESULTS.md)"; fi
}

# ---------------------------------------------------------------------------------------------- --list
if [[ $LIST_ONLY == 1 ]]; then
  echo "profile $PROFILE; data $DATA; out $OUT_DIR; ${#RUN[@]} steps"
  for k in "${!RUN[@]}"; do
    i=${RUN[$k]}
    if [[ "${S_ALWAYS[$i]}" == 1 ]]; then st=always; elif is_done "$i"; then st=done; else st=todo; fi
    printf '%3d  %-6s  %-32s  tables=%s\n       %s\n' $((k + 1)) "$st" "${S_ID[$i]}" "${S_TABLES[$i]:--}" "${S_CMD[$i]}"
  done
  exit 0
fi

# ---------------------------------------------------------------------------------------------- run
# With --jobs 1 the steps run one after another in the listed order. With --jobs J > 1 up to J steps run at once: a
# step starts when the data steps and the steps it names in --after have finished (an --always step: every earlier
# step of its method), in the listed order; a failure still stops the rest of its method.
declare -A CHILD_OF=() T_OF=()   # running step position k -> its process (own session) / start time
declare -A ST=()                 # k -> pending | running | ok | failed | skipped
on_signal() {
  say "interrupted; stopping the running step(s) (rerun the same command to resume)"
  local k
  for k in "${!CHILD_OF[@]}"; do
    kill -TERM -- "-${CHILD_OF[$k]}" 2>/dev/null || kill -TERM "${CHILD_OF[$k]}" 2>/dev/null
    record "${RUN[$k]}" interrupted $(( $(date +%s) - ${T_OF[$k]} ))
  done
  exit 130
}
trap on_signal INT TERM

# Locks: an exclusive flock on a file, held until released or until this script exits; where flock(1) is missing, a
# lock directory <file>.d holding the holder's pid (a holder that is gone, on this host, is taken over).
# take_lock FILE -> 0 held, 1 held by another (its line in LOCK_HOLDER), 2 cannot create the file, 3 FILE is a
# symbolic link (refused: writing the holder's line would truncate whatever it points to)
declare -A LOCK_FDS=() LOCK_DIRS=()
take_lock() {
  local f=$1 fd me="pid $$ on host $(hostname) since $(date '+%Y-%m-%d %H:%M:%S')"
  LOCK_HOLDER=""
  [[ -L "$f" || -L "$f.d" ]] && return 3
  if command -v flock > /dev/null 2>&1; then
    { exec {fd}>>"$f"; } 2>/dev/null || return 2
    if ! flock -n "$fd"; then
      LOCK_HOLDER="$(head -c 300 "$f" 2>/dev/null | tr '\n\t' '  ')"; exec {fd}>&-; return 1
    fi
    echo "$me" 2>/dev/null > "$f"
    LOCK_FDS[$f]=$fd; return 0
  fi
  local try pid host
  for try in 1 2; do
    if mkdir -- "$f.d" 2>/dev/null; then
      echo "$me" > "$f.d/holder"; LOCK_DIRS[$f]=1; return 0
    fi
    [[ -d "$f.d" ]] || return 2
    LOCK_HOLDER="$(head -c 300 "$f.d/holder" 2>/dev/null | tr '\n\t' '  ')"
    read -r _ pid _ _ host _ <<< "$LOCK_HOLDER"
    if [[ $try == 1 && "$host" == "$(hostname)" && "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
      rm -rf -- "$f.d"; continue     # its holder is gone (killed -9): stale
    fi
    break
  done
  return 1
}
release_lock() {
  local f=$1
  local fd="${LOCK_FDS[$f]:-}"
  if [[ -n "$fd" ]]; then flock -u "$fd"; exec {fd}>&-; unset "LOCK_FDS[$f]"; fi
  if [[ -n "${LOCK_DIRS[$f]:-}" ]]; then rm -rf -- "$f.d"; unset "LOCK_DIRS[$f]"; fi
}
release_all_locks() { local f; for f in "${!LOCK_DIRS[@]}"; do rm -rf -- "$f.d"; done; }
trap release_all_locks EXIT

# One run_all per out-dir: <out>/.run_all.lock, held until this script exits; a second copy is refused naming the
# holder, instead of both simulating and marking each other's steps "interrupted".
take_lock "$OUT_DIR/.run_all.lock"
case $? in
  1) die "--out-dir $OUT_DIR is in use by another run_all.sh (${LOCK_HOLDER:-unknown holder}); wait for it to end or use another --out-dir" ;;
  2) die "--out-dir $OUT_DIR: cannot create its lock file .run_all.lock" ;;
  3) die "--out-dir $OUT_DIR: its lock file .run_all.lock is a symbolic link; remove it (run_all.sh writes its own)" ;;
esac
# One writer of the data: while this run's simulation steps run (the first steps), <data>/.run_all-data.lock is held, so
# a second run_all on the same --data-dir (another --out-dir) cannot simulate into the same folders and remove the
# other's temporary files. Released when the first non-data step starts; taken only when a data step has work to do.
DATA_LOCK=""
for i in "${RUN[@]}"; do
  [[ "${S_DATA[$i]}" == 1 && -n "${S_OUT[$i]}" ]] || continue
  [[ $FORCE_DATA == 1 ]] || ! is_done "$i" || continue
  take_lock "$DATA/.run_all-data.lock"   # (not .run_all.lock: --data-dir may be the --out-dir)
  case $? in
    0) DATA_LOCK="$DATA/.run_all-data.lock" ;;
    1) die "--data-dir $DATA is in use by another run_all.sh simulating into it (${LOCK_HOLDER:-unknown holder}); wait for it to end or use another --data-dir" ;;
    2) say "note: --data-dir $DATA is not writable here, so it is not locked against a second run_all" ;;
    3) die "--data-dir $DATA: its lock file .run_all-data.lock is a symbolic link; remove it" ;;
  esac
  break
done
release_data_lock() { [[ -z "$DATA_LOCK" ]] || { release_lock "$DATA_LOCK"; DATA_LOCK=""; }; }

say "profile $PROFILE | methods: $METHODS | data: $DATA | out: $OUT_DIR | workers: $WORKERS | torch threads: ${JETFM_THREADS:-per node} | jobs: $JOBS | launcher: $PY"
say "${#RUN[@]} steps; logs in $OUT_DIR/logs"
FAILED_METHODS=" "
N_FAILED=0
for i in "${UNSELECTED[@]}"; do record "$i" not-selected 0; done

# Prepare step k: returns 0 when it must run, 1 when it was settled here (skipped after a failure, done already,
# finished by node 0). Sets ST[k].
prepare_step() {
  local k=$1 i=${RUN[$1]} id="${S_ID[${RUN[$1]}]}" m="${S_METHOD[${RUN[$1]}]}" n="($(($1 + 1))/${#RUN[@]})" out
  if [[ "$FAILED_METHODS" == *" $m "* || ( "$m" != data && "$FAILED_METHODS" == *" data "* ) ]]; then
    say "$n $id: skipped (an earlier step of ${m/data/the data} failed)"
    record "$i" skipped-after-failure 0; ST[$k]=skipped; return 1
  fi
  out="${S_OUT[$i]}"
  if [[ $FORCE == 1 && "${S_DATA[$i]}" == 0 && -n "$out" ]]; then
    if inside "$out" "$OUT_DIR"; then rm -rf "$out"; else rm -f "$out/done.json"; fi
  fi
  if [[ $FORCE_DATA == 1 && "${S_DATA[$i]}" == 1 && -n "$out" && "$PROFILE" != paper && -e "$out" ]] && inside "$out" "$DATA"; then
    # only the files the kit's simulator recorded in its simulate.json; a folder it did not make is refused
    local msg
    msg="$(python -m common.simulate clean "$out" 2>&1)" || { msg="${msg#error: }"; die "--force-data: ${msg%%  (rerun with --debug*}"; }
    say "$n $id: --force-data: $msg"
  fi
  if [[ "${S_ALWAYS[$i]}" == 0 ]] && is_done "$i"; then
    say "$n $id: done already, skipped | next: $(next_after "$k")"
    record "$i" done-earlier 0; ST[$k]=ok; return 1
  fi
  if [[ "$NODE_RANK" != 0 && "${S_CMD[$i]}" != torchrun* && "${S_DATA[$i]}${S_ALWAYS[$i]}" != 11 ]]; then
    # multi-node: single-process steps run on node 0 only; this node waits for the result on the shared disk
    if [[ "${S_ALWAYS[$i]}" == 1 || -z "$out" ]]; then say "$n $id: left to node 0"; ST[$k]=ok; return 1; fi
    say "$n $id: waiting for node 0 to finish it ($out/done.json)"
    until is_done "$i"; do sleep "${RUN_ALL_POLL_S:-30}"; done
    say "$n $id: finished by node 0 | next: $(next_after "$k")"
    ST[$k]=ok; return 1
  fi
  return 0
}

launch_step() {  # start step k in the background, in its own session (a stop kills its whole process tree)
  local k=$1 i=${RUN[$1]} id="${S_ID[${RUN[$1]}]}" log
  [[ "${S_DATA[$i]}" == 1 ]] || release_data_lock   # the data steps (always first, one at a time) are over
  log="$(logfile "$id")"
  say "($((k + 1))/${#RUN[@]}) $id: running (log $log)"
  record "$i" started 0
  { echo "===== $(date -u '+%Y-%m-%dT%H:%M:%SZ') $id"; echo "\$ ${S_CMD[$i]}"; } >> "$log"
  T_OF[$k]=$(date +%s)
  setsid --wait bash -c "${S_CMD[$i]}" >> "$log" 2>&1 < /dev/null &
  CHILD_OF[$k]=$!; ST[$k]=running
}

finish_step() {  # step k's process ended with status rc
  local k=$1 rc=$2 i=${RUN[$1]} id="${S_ID[${RUN[$1]}]}" m="${S_METHOD[${RUN[$1]}]}" n="($(($1 + 1))/${#RUN[@]})" el log
  el=$(( $(date +%s) - ${T_OF[$k]} )); log="$(logfile "$id")"
  unset "CHILD_OF[$k]" "T_OF[$k]"
  if [[ $rc == 0 ]]; then
    [[ "${S_ALWAYS[$i]}" == 1 ]] || mark_done "$i"  # an --always step's script must not find a done.json next time
    say "$n $id: done in $(dur $el) | next: $(next_after "$k")"
    record "$i" done "$el"; ST[$k]=ok
  else
    say "$n $id: FAILED (exit $rc) after $(dur $el); last lines of $log:"
    tail -n 15 "$log" | sed 's/^/    | /'
    record "$i" failed "$el"; ST[$k]=failed
    FAILED_METHODS="$FAILED_METHODS$m "
    N_FAILED=$((N_FAILED + 1))
  fi
}

# Can pending step k start? 0: yes, 1: not yet.
ready() {
  local k=$1 i=${RUN[$1]} m="${S_METHOD[${RUN[$1]}]}" j d
  for j in "${!RUN[@]}"; do
    ((j < k)) || break
    local jm="${S_METHOD[${RUN[$j]}]}" st="${ST[$j]:-pending}"
    [[ "$st" == pending || "$st" == running ]] || continue
    [[ "$jm" == data ]] && return 1          # the data come first, one step at a time (each uses --workers processes)
    [[ "${S_ALWAYS[$i]}" == 1 && "$jm" == "$m" ]] && return 1             # tables: after the method's steps
    IFS=',' read -ra deps <<< "${S_AFTER[$i]}"
    for d in "${deps[@]}"; do [[ -n "$d" && "${S_ID[${RUN[$j]}]}" == "$m/$d" ]] && return 1; done
  done
  return 0
}

if [[ $JOBS == 1 ]]; then
  for k in "${!RUN[@]}"; do
    prepare_step "$k" || continue
    launch_step "$k"
    wait "${CHILD_OF[$k]}"; rc=$?
    finish_step "$k" "$rc"
    [[ $STOP_ON_ERROR == 1 && $N_FAILED -gt 0 ]] && break
  done
else
  # A free slot takes the first ready pretraining step before any other ready step: the pretrainings are the long steps
  # that the rest waits for, so started first they leave short steps, not a lone pretraining, for the end of the run
  # (list order ran HEP-JEPA's three pretrainings, the kit's last, with one core idle; BENCHMARKS.md, "The default run
  # within 2 hours"). Which steps run, with which inputs, is unchanged; only when they start.
  # (the data steps still first: every later step waits for them, and a rerun settles the finished ones here)
  PRIO=()
  for k in "${!RUN[@]}"; do [[ "${S_DATA[${RUN[$k]}]}" == 1 ]] && PRIO+=("$k"); done
  for k in "${!RUN[@]}"; do [[ "${S_DATA[${RUN[$k]}]}" != 1 && "${S_ID[${RUN[$k]}]#*/}" == pretrain* ]] && PRIO+=("$k"); done
  for k in "${!RUN[@]}"; do [[ "${S_DATA[${RUN[$k]}]}" != 1 && "${S_ID[${RUN[$k]}]#*/}" != pretrain* ]] && PRIO+=("$k"); done
  for k in "${!RUN[@]}"; do ST[$k]=pending; done
  while :; do
    left=0
    for k in "${PRIO[@]}"; do
      [[ "${ST[$k]}" == pending ]] || continue
      left=1
      ((${#CHILD_OF[@]} < JOBS)) || break
      [[ $STOP_ON_ERROR == 1 && $N_FAILED -gt 0 ]] && { ST[$k]=skipped; continue; }
      ready "$k" || continue
      prepare_step "$k" && launch_step "$k"
    done
    ((${#CHILD_OF[@]} > 0)) || { ((left == 0)) && break; continue; }
    wait -n -p DONE_PID "${CHILD_OF[@]}"; rc=$?
    for k in "${!CHILD_OF[@]}"; do [[ "${CHILD_OF[$k]}" == "$DONE_PID" ]] && { finish_step "$k" "$rc"; break; }; done
  done
fi

if [[ "$NODE_RANK" != 0 ]]; then say "node $NODE_RANK finished; node 0 writes RESULTS.md"; [[ $N_FAILED == 0 ]]; exit; fi
# "Which pretraining?" (common/results/compare.py): one frozen probe over the embed steps' outputs of every method; runs here,
# after all methods, because it reads several methods' steps. A failure is counted and the table is left out.
if [[ -z "$TABLE" || "$TABLE" == compare.which_pretraining ]] && compgen -G "$OUT_DIR/*/embed/*/embeddings.npz" > /dev/null; then
  say "compare: Which pretraining? (log $OUT_DIR/logs/compare.log)"
  t_cmp=$(date +%s); cmp_status=done
  if ! python -m common.results.compare --runs "$OUT_DIR" --out "$OUT_DIR/compare" --profile "$PROFILE" > "$OUT_DIR/logs/compare.log" 2>&1; then
    say "compare FAILED; last lines of $OUT_DIR/logs/compare.log:"; tail -n 15 "$OUT_DIR/logs/compare.log" | sed 's/^/    | /'
    rm -f "$OUT_DIR/compare/compare.which_pretraining.json"; N_FAILED=$((N_FAILED + 1)); cmp_status=failed
  fi
  # in status.tsv like a table writer, so the report reads compare.which_pretraining from this folder alone
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' compare/which_pretraining "$cmp_status" $(( $(date +%s) - t_cmp )) \
    logs/compare.log compare.which_pretraining always compare >> "$OUT_DIR/status.tsv"
fi
# Tables and plots: always rebuilt from whatever result files exist (missing ones are flagged in RESULTS.md).
say "tables: writing $RESULTS_DIR/RESULTS.md"
# --strict: a cell that should hold a number and does not (a step ran but wrote no value) makes the run fail.
python -m common.results.report --runs "$OUT_DIR" --profile "$PROFILE" --out "$RESULTS_DIR" --strict \
  ${TABLE:+--strict-tables "$TABLE"} > "$OUT_DIR/logs/results.log" 2>&1
rc=$?
say "$(tail -n 1 "$OUT_DIR/logs/results.log")"
if [[ $rc != 0 ]]; then
  [[ $rc == 1 ]] && say "RESULTS.md has missing cells (search it for **missing**)" \
    || { say "FAILED to write RESULTS.md; see $OUT_DIR/logs/results.log"; tail -n 15 "$OUT_DIR/logs/results.log"; }
  N_FAILED=$((N_FAILED + 1))
fi
say "finished in $(dur $(( $(date +%s) - T0 ))) with $N_FAILED failure(s)"
[[ $N_FAILED == 0 ]]
exit $?
}
