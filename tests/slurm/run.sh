#!/usr/bin/env bash
# End-to-end test on a real single-node SLURM (opt-in: `make test-slurm`).
#
# Starts munged, slurmctld and slurmd from Debian's munge and slurm-wlm packages with a private
# configuration in a temporary directory, runs the small workflow (config.yaml +
# tests/config.small.yaml) once locally and once through profiles/slurm with the SLURM
# executor, checks that the result tables are byte-identical and that job grouping submitted
# fewer SLURM jobs than Snakemake jobs, and always stops the daemons it started by their PIDs.
#
# Needs: root (slurmd starts the jobs), the packages `slurm-wlm munge` (--install runs
# apt-get), snakemake with snakemake-executor-plugin-slurm on PATH, free TCP ports 6817-6818 and
# no /etc/slurm/slurm.conf: the test links it to its own configuration while it runs, because
# the jobstep executor drops SLURM_CONF before the srun inside each job.
#
# Usage: tests/slurm/run.sh [--install] [--keep] [--local DIR]
#   --install    apt-get install -y slurm-wlm munge when they are missing
#   --keep       keep the temporary directory (configuration, daemon logs, both working dirs)
#   --local DIR  compare with the finished local small run in DIR instead of running it
# Environment: SLURM_TEST_PORT (slurmctld port, slurmd uses the next one; default 6817),
#   SLURM_TEST_TMP (parent of the temporary directory; default /tmp).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TABLES=(results/metrics/per_split.tsv results/metrics/summary.tsv results/sbr/sbr.tsv)
INSTALL=0
KEEP=0
LOCAL=
while (($#)); do
    case $1 in
    --install) INSTALL=1 ;;
    --keep) KEEP=1 ;;
    --local)
        LOCAL=$(cd "${2:?--local needs a directory}" && pwd)
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "unknown argument: $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done

say() { printf '[test-slurm %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
    printf '[test-slurm] ERROR: %s\n' "$*" >&2
    exit 1
}

# --- prerequisites -------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "must run as root: slurmd starts the jobs and munged runs as the munge user"
missing=()
for prog in munged mungekey slurmctld slurmd sbatch squeue sinfo scontrol scancel; do
    command -v "$prog" >/dev/null || missing+=("$prog")
done
if ((${#missing[@]})); then
    if ((INSTALL)); then
        say "installing slurm-wlm and munge (missing: ${missing[*]})"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
    else
        die "missing ${missing[*]}: install the Debian packages with
    apt-get update && apt-get install -y slurm-wlm munge
or rerun with --install"
    fi
fi
id munge >/dev/null 2>&1 || die "no user 'munge' (the munge package creates it): apt-get install -y munge"
command -v snakemake >/dev/null || die "snakemake is not on PATH (make test-slurm puts .venv/bin first)"
python3_of_snakemake=$(head -1 "$(command -v snakemake)" | sed 's/^#!//')
"$python3_of_snakemake" -c "import snakemake_executor_plugin_slurm" 2>/dev/null ||
    die "snakemake-executor-plugin-slurm is not installed next to $(command -v snakemake) (pip install -r requirements.txt)"
# The executor runs `srun` inside each job with every SLURM_* variable removed (plugin
# snakemake-executor-plugin-slurm-jobstep 0.6.1), so srun only finds the default path.
SYSTEM_CONF=/etc/slurm/slurm.conf
[[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]] &&
    die "$SYSTEM_CONF exists: this machine has its own SLURM configuration; run the test on a machine without one"
PORT=${SLURM_TEST_PORT:-6817}
for port in "$PORT" $((PORT + 1)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port is in use (another SLURM?): set SLURM_TEST_PORT to a free pair of ports"
    fi
done

# --- private SLURM configuration -----------------------------------------------------------
T=$(mktemp -d "${SLURM_TEST_TMP:-/tmp}/datspect-slurm.XXXXXX")
chmod 755 "$T" # munged (user munge) must reach its socket directory
mkdir -p "$T"/{munge,state,spool,log,run,local,slurm}
chown munge:munge "$T/munge"
export SLURM_CONF=$T/slurm.conf # every SLURM client below (and the executor) reads this
PIDS=()
SNAKEMAKE_PID=
OK=0

stop_all() {
    local rc=$? pid jobs left
    set +e
    if [[ -n $SNAKEMAKE_PID ]] && kill -0 "$SNAKEMAKE_PID" 2>/dev/null; then
        # SIGINT makes Snakemake cancel its SLURM jobs (it finishes them on SIGTERM).
        say "interrupting snakemake (PID $SNAKEMAKE_PID)"
        kill -INT "$SNAKEMAKE_PID"
        for _ in $(seq 300); do
            kill -0 "$SNAKEMAKE_PID" 2>/dev/null || break
            sleep 1
        done
        kill -KILL "$SNAKEMAKE_PID" 2>/dev/null
        wait "$SNAKEMAKE_PID" 2>/dev/null
    fi
    if [[ -n ${PIDS[*]-} ]] && [[ -S $T/munge/socket ]]; then
        # Jobs left by an interrupted run first, so that slurmd can still clean them up.
        mapfile -t jobs < <(squeue -h -o %i 2>/dev/null)
        if ((${#jobs[@]})); then
            say "cancelling leftover jobs: ${jobs[*]}"
            scancel --full "${jobs[@]}" 2>/dev/null
            for _ in $(seq 30); do
                [[ -z $(squeue -h -t R,CG,PD -o %i 2>/dev/null) ]] && break
                sleep 1
            done
        fi
    fi
    # Daemons in reverse order of their start, by PID.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null && say "stopping PID $pid"
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$pid" 2>/dev/null && { say "PID $pid ignored SIGTERM: SIGKILL"; kill -KILL "$pid"; }
        wait "$pid" 2>/dev/null
    done
    [[ $(readlink "$SYSTEM_CONF") == "$SLURM_CONF" ]] && rm -f "$SYSTEM_CONF"
    # Anything still running with our private SLURM_CONF or inside the temporary directory (job
    # steps, job shells) is ours; the processes of this check must not inherit SLURM_CONF.
    export -n SLURM_CONF
    mapfile -t left < <(
        {
            grep -lsz "^SLURM_CONF=$SLURM_CONF\$" /proc/[0-9]*/environ | cut -d/ -f3
            for cwd in /proc/[0-9]*/cwd; do
                [[ $(readlink "$cwd" 2>/dev/null) == "$T"* ]] && echo "${cwd//[^0-9]/}"
            done
        } | sort -un | grep -vx -e $$ -e "$BASHPID"
    )
    if ((${#left[@]})); then
        say "leftover processes of this test: ${left[*]}"
        ps -o pid,args -p "$(IFS=,; echo "${left[*]}")"
        kill -KILL "${left[@]}" 2>/dev/null
        rc=1
    else
        say "daemons stopped; no leftover processes"
    fi
    if ((OK && !KEEP && rc == 0)); then
        rm -rf "$T"
    else
        say "kept $T (slurm.conf, log/, local/, slurm/)"
    fi
    exit "$rc"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

node=$(slurmd -C | head -1) # NodeName=<host> CPUs=... RealMemory=...
host=${node#NodeName=}
host=${host%% *}
cat >"$SLURM_CONF" <<EOF
# Written by tests/slurm/run.sh: a private single-node cluster.
ClusterName=datspect-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/socket
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/run/slurmctld.pid
SlurmdPidFile=$T/run/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Without accounting the executor reads job states with squeue, which shows finished jobs for
# MinJobAge seconds.
MinJobAge=300
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

ln -s "$SLURM_CONF" "$SYSTEM_CONF"

# --- daemons -------------------------------------------------------------------------------
# Each daemon in its own session, so that a Ctrl-C reaches Snakemake (which then cancels its
# jobs) but not the daemons that must still serve the cancellation.
mungekey --create --keyfile="$T/munge/munge.key"
chown munge:munge "$T/munge/munge.key"
setsid setpriv --reuid=munge --regid=munge --init-groups \
    munged --foreground --socket="$T/munge/socket" --key-file="$T/munge/munge.key" \
    --pid-file="$T/munge/munged.pid" --log-file="$T/munge/munged.log" \
    --seed-file="$T/munge/munged.seed" >"$T/log/munged.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [[ -S $T/munge/socket ]] && break; sleep 0.1; done
[[ -S $T/munge/socket ]] || die "munged did not start: $(tail -3 "$T/log/munged.out")"
setsid slurmctld -D -f "$SLURM_CONF" >"$T/log/slurmctld.out" 2>&1 &
PIDS+=($!)
setsid slurmd -D -f "$SLURM_CONF" >"$T/log/slurmd.out" 2>&1 &
PIDS+=($!)
say "started munged, slurmctld, slurmd: PIDs ${PIDS[*]} (configuration in $T)"
for _ in $(seq 60); do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
    [[ $state == idle ]] && break
    sleep 1
done
[[ $state == idle ]] || die "node $host not idle after 60 s (state '$state'); see $T/log/"
say "node $host idle: $(sinfo -h -o '%P %c CPUs %m MB')"

# --- the small workflow, locally and through SLURM -----------------------------------------
run_workflow() { # name, extra snakemake arguments...
    local name=$1 start
    shift
    start=$(date +%s)
    # In the background: the shell runs its traps only when `wait` returns.
    (cd "$REPO" && exec snakemake --snakefile "$REPO/Snakefile" --directory "$T/$name" \
        --configfile "$REPO/config.yaml" "$REPO/tests/config.small.yaml" "$@") \
        >"$T/$name.log" 2>&1 &
    SNAKEMAKE_PID=$!
    wait "$SNAKEMAKE_PID" || {
        SNAKEMAKE_PID=
        tail -40 "$T/$name.log" >&2
        die "the $name run failed (log: $T/$name.log)"
    }
    SNAKEMAKE_PID=
    say "$name run: $(($(date +%s) - start)) s, $(grep -o '[0-9]* of [0-9]* steps (100%) done' "$T/$name.log" | tail -1)"
}

if [[ -n $LOCAL ]]; then
    for table in "${TABLES[@]}"; do
        [[ -f $LOCAL/$table ]] || die "--local $LOCAL: no $table there"
    done
    say "local run: reusing $LOCAL"
else
    LOCAL=$T/local
    run_workflow local --cores "$(nproc)"
fi
# Through the profile as it is; without accounting (sacct) the executor must read job states
# with squeue, and it checks them every few seconds instead of 40 s.
run_workflow slurm --profile "$REPO/profiles/slurm" \
    --slurm-status-command squeue --slurm-init-seconds-before-status-checks 5

# --- checks --------------------------------------------------------------------------------
fail=0
for table in "${TABLES[@]}"; do
    if cmp -s "$LOCAL/$table" "$T/slurm/$table"; then
        say "identical: $table ($(wc -l <"$T/slurm/$table") lines)"
    else
        say "DIFFERENT: $table"
        diff "$LOCAL/$table" "$T/slurm/$table" | head -20
        fail=1
    fi
done
n_jobs=$(grep -o '[0-9]* of [0-9]* steps (100%) done' "$T/slurm.log" | tail -1 | cut -d' ' -f3)
n_submitted=$(grep -c '_slurm_rpc_submit_batch_job: JobId=' "$T/log/slurmctld.log" || true)
mapfile -t groups < <(grep -o 'submitted with SLURM jobid [0-9]* (log: [^)]*/group_per_image' \
    "$T/slurm.log" | cut -d' ' -f5)
n_groups=${#groups[@]}
say "SLURM: $n_submitted sbatch submissions ($n_groups of them grouped per-image jobs) for $n_jobs Snakemake jobs"
for id in "${groups[@]}"; do
    say "group job $id: $(grep -o "Allocate JobId=$id .*#CPUs=[0-9]*" "$T/log/slurmctld.log" | grep -o '#CPUs=.*')"
done
if ((n_groups == 0 || n_submitted >= n_jobs)); then
    say "FAIL: job grouping did not reduce the number of submissions"
    fail=1
fi
((fail == 0)) || die "the SLURM run failed the checks above"
OK=1
say "PASS"
