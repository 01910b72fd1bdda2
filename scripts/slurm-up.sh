#!/usr/bin/env bash
# scripts/slurm-up.sh: a single-node Slurm with fake GPUs for podsweep's Slurm cluster, its
# tests and its benchmark (Debian 12, slurm 22.05, run as root; no systemd needed).
#
# Idempotent: installs the Debian packages that are missing, (re)writes the configuration,
# starts only the daemons that are not running, and prints "slurm ready" once the node is
# idle. Accounts and QOS are podsweep's business (podsweep project create): this script
# only sets the cluster up for them: accounting in slurmdbd (MariaDB), GPUs as GRES,
# QOS-based preemption that requeues.
#
# Settings (environment, defaults in brackets):
#   PODSWEEP_SLURM_STATE  where pid records and install logs go [/var/tmp/podsweep-slurm]
#   SLURM_GPUS [4]  SLURM_CPUS [16]  SLURM_MEM_MB [16000]  SLURM_CLUSTER [podsweep]
#   SLURM_SHARDS [4]: shards of each GPU (Slurm's gres/shard), for pods of a share of one
#
# Stop with scripts/slurm-down.sh (only what this script started, by pid).
set -euo pipefail

STATE=${PODSWEEP_SLURM_STATE:-/var/tmp/podsweep-slurm}
RUN=$STATE/run
GPUS=${SLURM_GPUS:-4}
CPUS=${SLURM_CPUS:-16}
MEM_MB=${SLURM_MEM_MB:-16000}
CLUSTER=${SLURM_CLUSTER:-podsweep}
SHARDS=${SLURM_SHARDS:-4}
NODE=$(hostname -s)            # slurmd finds its NodeName by the short hostname
DB_PASS=podsweep-slurmdbd      # a MariaDB user reachable only through the local socket
LOGS=/var/log/slurm

started=$(date +%s%N)
say() {
  local ms=$(( ($(date +%s%N) - started) / 1000000 ))
  printf '[slurm-up %3d.%01ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"
}

# On failure, show what the daemons said: CI prints this instead of a bare exit code.
dump_logs() {
  local f
  for f in "$LOGS/slurmctld.log" "$LOGS/slurmd.log" "$LOGS/slurmdbd.log" \
           /var/log/mysql/error.log "$RUN"/*.out; do
    [[ -s "$f" ]] || continue
    echo "----- last lines of $f"
    tail -n 25 "$f"
  done
}
die() { say "ERROR: $*"; dump_logs; exit 1; }

# Alive and not a zombie (this machine's init reaps exited daemons lazily), with that name.
alive() {
  local pid=$1 name=$2
  [[ -n "$pid" && -r /proc/$pid/stat ]] || return 1
  [[ "$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f1)" != Z ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]]
}
read_pid() { cat "$1" 2>/dev/null || true; }
wait_until() {  # SECONDS COMMAND...: run COMMAND until it succeeds
  local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < end )) || return 1
    sleep 0.2
  done
}

[[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts daemons)"
mkdir -p "$RUN"

# ------------------------------------------------------------------ packages
packages=(munge slurm-client slurmctld slurmd slurmdbd mariadb-server)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if (( ${#missing[@]} )); then
  say "installing ${missing[*]}"
  # no systemd here: keep the packages' postinst scripts from starting daemons themselves
  policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
    policy=1
  fi
  ok=1
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${missing[@]}"; } >"$STATE/apt.log" 2>&1 || ok=0
  (( policy )) && rm -f /usr/sbin/policy-rc.d
  (( ok )) || { tail -n 20 "$STATE/apt.log"; die "apt-get install failed"; }
fi

# ------------------------------------------------------------------ fake GPUs
# GRES File= must be character devices: with plain files Slurm counts the GPUs but never
# sets CUDA_VISIBLE_DEVICES. Major 195 is NVIDIA's; nothing opens them.
for ((i = 0; i < GPUS; i++)); do
  [[ -c /dev/fakegpu$i ]] || { rm -f "/dev/fakegpu$i"; mknod -m 666 "/dev/fakegpu$i" c 195 "$i"; }
done

# ------------------------------------------------------------------ directories, munge key
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 700 /var/log/munge
install -d -o munge -g munge -m 711 /var/lib/munge
install -d -m 755 /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd "$LOGS"
install -d -o mysql -g root -m 755 /run/mysqld
install -d -o mysql -g adm -m 750 /var/log/mysql
if [[ ! -s /etc/munge/munge.key ]]; then
  mungekey -c -f -k /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key; chmod 600 /etc/munge/munge.key
fi

# ------------------------------------------------------------------ configuration
slurm_conf="# written by podsweep's scripts/slurm-up.sh
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# how long a requeued (preempted) task waits before it may start again (default 120 s)
AuthInfo=cred_expire=10
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
# batch_sched_delay=0: the default 3 s delay triples the time of many short array tasks
SchedulerParameters=batch_sched_delay=0,sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# believe the CPUs and memory below rather than this small machine's
SlurmdParameters=config_overrides
GresTypes=gpu,shard
MaxArraySize=10001
# a preempted task gets SIGTERM, then SIGKILL this many seconds later
KillWait=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu,gres/shard
AccountingStorageEnforce=associations,limits,qos,safe
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
PriorityType=priority/multifactor
PriorityWeightQOS=10000
PreemptType=preempt/qos
PreemptMode=REQUEUE
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$GPUS,shard:$((GPUS * SHARDS)) State=UNKNOWN
PartitionName=gpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=1000
# podsweep lends idle GPUs by moving a task that waits on its project's quota here (same
# nodes). A partition of its own, because Slurm's scheduler skips every other task of an
# array in the partition where one of its tasks could not start (the over-quota ones).
PartitionName=borrow Nodes=$NODE Default=NO MaxTime=INFINITE State=UP DefMemPerCPU=1000"
# Each GPU's shards on the GPU's own device file: Slurm gives a task shards of one GPU and
# points CUDA_VISIBLE_DEVICES at it; a GPU holding shards is not given whole, and back.
gres_conf="NodeName=$NODE Name=gpu File=/dev/fakegpu[0-$((GPUS - 1))]"
for ((i = 0; i < GPUS; i++)); do
  gres_conf+=$'\n'"NodeName=$NODE Name=shard Count=$SHARDS File=/dev/fakegpu$i"
done
dbd_conf="AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$LOGS/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db"

changed=()
write() {  # PATH MODE CONTENT DAEMON...: rewrite PATH if it differs; note daemons to restart
  local path=$1 mode=$2 content=$3; shift 3
  if [[ ! -f "$path" || "$(cat "$path")" != "$content" ]]; then
    printf '%s\n' "$content" > "$path"; chmod "$mode" "$path"; changed+=("$@")
  fi
}
write /etc/slurm/slurm.conf 644 "$slurm_conf" slurmctld slurmd
write /etc/slurm/gres.conf 644 "$gres_conf" slurmctld slurmd
write /etc/slurm/slurmdbd.conf 600 "$dbd_conf" slurmdbd      # slurmdbd insists on 0600
printf '[mysqld]\nbind-address=127.0.0.1\ninnodb_buffer_pool_size=256M\ninnodb_lock_wait_timeout=900\n' \
  > /etc/mysql/mariadb.conf.d/99-podsweep-slurmdbd.cnf

# a changed configuration restarts the daemons this script started (never others)
for name in $(printf '%s\n' "${changed[@]}" | sort -u); do
  pid=$(read_pid "$RUN/$name.pid")
  if alive "$pid" "$name"; then
    say "configuration changed: restarting $name (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 100); do alive "$pid" "$name" || break; sleep 0.1; done
    alive "$pid" "$name" && kill -KILL "$pid"
    rm -f "$RUN/$name.pid"
  fi
done

# ------------------------------------------------------------------ daemons
start() {  # NAME PIDFILE COMMAND...: start a self-daemonising daemon unless it runs
  local name=$1 pidfile=$2; shift 2
  local pid; pid=$(read_pid "$pidfile")
  if alive "$pid" "$name"; then say "$name runs (pid $pid)"; return; fi
  rm -f "$pidfile"
  "$@" </dev/null >"$RUN/$name.out" 2>&1 || die "$name did not launch"
  for _ in $(seq 150); do pid=$(read_pid "$pidfile"); alive "$pid" "$name" && break; sleep 0.1; done
  alive "$pid" "$name" || die "$name did not start"
  echo "$pid" > "$RUN/$name.pid"
  say "$name started (pid $pid)"
}

start munged /run/munge/munged.pid setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged
wait_until 10 bash -c 'munge -n | unmunge' || die "munge does not work"

[[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql \
  >"$STATE/mariadb-install-db.log" 2>&1
start mariadbd /run/mysqld/mysqld.pid \
  setsid -f /usr/sbin/mariadbd --user=mysql --log-error=/var/log/mysql/error.log
wait_until 30 mariadb-admin ping || die "MariaDB does not answer"
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
start slurmdbd /run/slurmdbd.pid /usr/sbin/slurmdbd
wait_until 60 sacctmgr -n -P show cluster || die "slurmdbd does not answer"
sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER" \
  || sacctmgr -i add cluster "$CLUSTER" >/dev/null

start slurmctld /run/slurmctld.pid /usr/sbin/slurmctld
# slurmctld exits 0 even when it dies right after forking: ask it
wait_until 30 scontrol ping || die "slurmctld does not answer"
start slurmd /run/slurmd.pid /usr/sbin/slurmd
if [[ " ${changed[*]} " == *" slurmctld "* ]]; then
  scontrol reconfigure >/dev/null 2>&1 || true
  # slurmctld 22.05 was seen to exit on this reconfigure, just after its restart with shards
  # newly configured (a job from before in its state): start it again if it did
  sleep 1
  start slurmctld /run/slurmctld.pid /usr/sbin/slurmctld
  wait_until 30 scontrol ping || die "slurmctld does not answer"
fi

# ------------------------------------------------------------------ the node, idle
end=$(( $(date +%s) + 60 ))
while :; do
  state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | sort -u | head -n 1)
  case "$state" in
    idle|mixed|allocated) break ;;
    *drain*|down*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  (( $(date +%s) < end )) || die "node $NODE is not idle (state: ${state:-unknown})"
  sleep 0.2
done
# GPUs registered in accounting: podsweep's QOS limits (GrpTRES=gres/gpu=N) need them
wait_until 30 bash -c 'sacctmgr -n -P show tres type=gres format=name | grep -qx gpu' \
  || die "slurmdbd does not know gres/gpu"
# ... and shards, for the limits in shards of projects with pods of a share of one GPU
wait_until 30 bash -c 'sacctmgr -n -P show tres type=gres format=name | grep -qx shard' \
  || die "slurmdbd does not know gres/shard"
say "slurm ready: node $NODE $state, $(sinfo -h -n "$NODE" -o %G), $CPUS CPUs"
echo "slurm ready"
