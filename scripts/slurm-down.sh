#!/usr/bin/env bash
# scripts/slurm-down.sh [--purge]: stop what scripts/slurm-up.sh started, by the pids it
# recorded (never by name). Jobs are cancelled first so that no task outlives slurmd.
# --purge also drops the accounting database, Slurm's state, logs and configuration and the
# fake GPU devices (the packages stay installed).
set -uo pipefail

STATE=${PODSWEEP_SLURM_STATE:-/var/tmp/podsweep-slurm}
RUN=$STATE/run
purge=0; [[ "${1:-}" == --purge ]] && purge=1
say() { echo "[slurm-down] $*"; }

alive() {
  local pid=$1 name=$2
  [[ -n "$pid" && -r /proc/$pid/stat ]] || return 1
  [[ "$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f1)" != Z ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]]
}

stop() {  # NAME [SECONDS]
  local name=$1 wait=${2:-20} pid
  pid=$(cat "$RUN/$name.pid" 2>/dev/null || true)
  if ! alive "$pid" "$name"; then rm -f "$RUN/$name.pid"; return; fi
  kill -TERM "$pid"
  for ((i = 0; i < wait * 10; i++)); do alive "$pid" "$name" || break; sleep 0.1; done
  if alive "$pid" "$name"; then say "$name ignored SIGTERM: SIGKILL"; kill -KILL "$pid"; fi
  rm -f "$RUN/$name.pid"
  say "$name stopped (pid $pid)"
}

if alive "$(cat "$RUN/slurmctld.pid" 2>/dev/null)" slurmctld && scontrol ping >/dev/null 2>&1; then
  jobs=$(squeue -h -o %A | sort -u)
  if [[ -n "$jobs" ]]; then
    say "cancelling $(wc -w <<<"$jobs") job(s)"
    # shellcheck disable=SC2086
    scancel $jobs
    for _ in $(seq 300); do [[ -z "$(squeue -h -t R,CG -o %A)" ]] && break; sleep 0.1; done
  fi
fi
stop slurmd
stop slurmctld
stop slurmdbd
if (( purge )) && alive "$(cat "$RUN/mariadbd.pid" 2>/dev/null)" mariadbd; then
  # never delete the database's folder: InnoDB remembers its tables; DROP it instead
  mariadb -e "DROP DATABASE IF EXISTS slurm_acct_db" && say "dropped slurm_acct_db"
fi
stop mariadbd 60
stop munged
if (( purge )); then
  rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/* /var/log/slurm/*
  rm -f /etc/slurm/slurm.conf /etc/slurm/gres.conf /etc/slurm/slurmdbd.conf \
        /etc/mysql/mariadb.conf.d/99-podsweep-slurmdbd.cnf /dev/fakegpu[0-9]*
  rm -rf "$RUN"
  say "purged"
fi
say "stopped"
