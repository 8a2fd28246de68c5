#!/usr/bin/env bash
# Why tasks died, from real accounting: a sweep on the mini-cluster (slurmdbd, MariaDB)
# whose four tasks end badly in four ways: over the time limit, over --mem, cancelled,
# and preempted by a job of the urgent partition (then requeued, and held).
# aihpc-collect --failed --why names TIMEOUT, OUT_OF_MEMORY, CANCELLED and PREEMPTED
# from sacct, with the node each ran on.
. "$(dirname "$0")/lib.sh"
if ! keeps_accounting; then
    skip_all "the cluster keeps no accounting (contrib/minicluster up starts slurmdbd)"
fi
scontrol show partition urgent >/dev/null 2>&1 || skip_all "no urgent partition to preempt with (contrib/minicluster up makes one)"
plan 8
work=$(scratch)
cd "$work"
sweep_tool=$top_builddir/tools/aihpc-sweep
collect_tool=$top_builddir/tools/aihpc-collect

# Each task is alone on its node (--exclusive), so that preempting one touches no other.
cat >task.sh <<'SH'
case $1 in
oom) exec python3 -c 'import time; b = b"x" * (600 << 20); time.sleep(600)' ;;
*) exec sleep 600 ;;
esac
SH
cat >spec.json <<SPEC
{"name": "ends", "axes": [{"param": "how", "values": ["timeout", "oom", "cancel", "preempt"]}],
 "command": ["bash", "$work/task.sh", "{how}"],
 "slurm": {"sbatch": ["--time=1", "--mem=200M", "--exclusive"]}}
SPEC
as_user "$sweep_tool" expand spec.json -o "$work/s" >/dev/null
out=$(as_user "$sweep_tool" submit s --max-array-size auto 2>&1)
job=$(awk '$1 ~ /^main\./ {print $2}' <<<"$out")
urgent=
cleanup() {
    [ -n "$job" ] && scancel "$job" 2>/dev/null
    [ -n "$urgent" ] && scancel "$urgent" 2>/dev/null
    restore_site_keys
    remove_scratch
}
trap cleanup EXIT

# element_state TASK: the array element's state in the queue ("" once it has left it).
element_state() { squeue -h -j "${job}_$1" -o %T 2>/dev/null | head -1; }

# wait_state TASK STATE [SECONDS]: until the element is in STATE; fails otherwise.
wait_state() {
    local deadline=$((SECONDS + ${3:-120}))
    while [ $SECONDS -lt $deadline ]; do
        [ "$(element_state "$1")" = "$2" ] && return 0
        sleep 0.3
    done
    echo "task $1 is '$(element_state "$1")', not $2" >&2
    return 1
}

# wait_gone TASK [SECONDS]: until the element has left the queue.
wait_gone() {
    local deadline=$((SECONDS + ${2:-180}))
    while [ $SECONDS -lt $deadline ]; do
        [ -z "$(element_state "$1")" ] && return 0
        sleep 0.5
    done
    return 1
}

if [[ $job =~ ^[0-9]+$ ]]; then pass "the sweep is one array job"
else fail "the sweep is one array job" "$out"; finish; exit; fi
# The task over --mem is killed on its own; the one to cancel, once it runs.
wait_gone 1 120
if wait_state 2 RUNNING 120 && as_user scancel "${job}_2"; then pass "the task to cancel runs, and its owner cancels it"
else fail "the task to cancel runs, and its owner cancels it" "$(squeue -a 2>&1)"; fi
# The task to preempt runs alone on its node; a job of the urgent partition that needs
# that node whole takes it back.
if wait_state 3 RUNNING 120; then
    node=$(squeue -h -j "${job}_3" -o %N)
    urgent=$(as_user sbatch --parsable -p urgent -w "$node" --exclusive --time=5 -o /dev/null --wrap 'sleep 600')
    # Requeued, the element waits again: held there, it stays a task without a result.
    if wait_state 3 PENDING 120; then
        scontrol hold "${job}_3" >/dev/null
        pass "a job of the urgent partition preempts the task on $node, which is requeued"
    else
        fail "a job of the urgent partition preempts the task on $node, which is requeued" "$(squeue -a 2>&1)"
    fi
    scancel "$urgent"
else
    fail "a job of the urgent partition preempts the task to preempt" "it never ran: $(squeue -a 2>&1)"
fi
# The time limit (1 minute) ends the first task.
wait_gone 0 180

why=$(as_user "$collect_tool" s --failed --why 2>&1)
# block TASK: the lines --why prints for the task, from its "task N:" line to the next.
block() { awk -v t="task $1:" 'index($0, t) == 1 { on = 1; print; next } /^(task |missing)/ { on = 0 } on' <<<"$why"; }
ok "--why says the first task hit its time limit, on the node it ran on" \
    bash -c 'grep -Eq "^  sacct: TIMEOUT after [0-9:]+ on n[12].*\(job '"$job"'_0" <<<"$0"' "$(block 0)"
ok "--why says the task over --mem ran out of memory" \
    bash -c 'grep -Eq "^  sacct: OUT_OF_MEMORY .*on n[12].*\(job '"$job"'_1" <<<"$0"' "$(block 1)"
ok "--why says the third task was cancelled" \
    bash -c 'grep -Eq "^  sacct: CANCELLED .*on n[12].*\(job '"$job"'_2" <<<"$0"' "$(block 2)"
ok "--why says the fourth task was preempted and requeued, and is pending again" \
    bash -c 'grep -Eq "^  sacct: PREEMPTED .*on n[12].*\(job '"$job"'_3.*, requeued; now PENDING$" <<<"$0"' "$(block 3)"
ok "--why lists all four as failed or missing, and runs without a note on stderr" \
    bash -c '[ "$(head -1 <<<"$0")" = "0-3" ] && ! grep -q "^aihpc-collect:" <<<"$0"' "$why"
[ $tap_failed -eq 0 ] || printf '%s\n' "$why" | sed 's/^/# why: /'
finish
