#!/bin/bash
# Usage: bench-compression.sh HERALD LINES  -- one broker per codec, produce then consume.
set -u
HERALD=$1; LINES=$2; N=$(wc -l < "$LINES")
TICK=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
for codec in ${CODECS:-none lz4 zstd}; do
  D=$(mktemp -d /tmp/hz-XXXX)
  "$HERALD" serve --flush never --port 0 --port-file $D/port --data-dir $D/data > $D/log 2>&1 &
  BPID=$!
  for i in $(seq 50); do [ -s $D/port ] && break; sleep 0.1; done
  B=127.0.0.1:$(cat $D/port)
  "$HERALD" topic create logs --partitions 1 --broker $B > /dev/null
  b0=$(cpu $BPID)
  /usr/bin/time -f "%e %U %S" -o $D/ptime "$HERALD" produce logs --partition 0 --compression $codec --no-progress --broker $B < "$LINES"
  b1=$(cpu $BPID)
  /usr/bin/time -f "%e %U %S" -o $D/ctime "$HERALD" consume logs --partition 0 --from-beginning --count $N --broker $B > $D/out
  b2=$(cpu $BPID)
  lines_out=$(wc -l < $D/out); same=$(cmp -s $D/out "$LINES" && echo same || echo DIFFERENT)
  disk=$(find $D/data -name '*.log' -printf '%s\n' | awk '{s+=$1} END {print s}')
  read pw pu ps < $D/ptime; read cw cu cs < $D/ctime
  python3 - "$codec" "$N" "$disk" "$pw" "$pu" "$ps" "$cw" "$cu" "$cs" "$((b1-b0))" "$((b2-b1))" "$TICK" "$lines_out" "$same" <<'PY'
import sys
c,n,disk,pw,pu,ps,cw,cu,cs,bp,bc,tick,lo,same=sys.argv[1:]
n=int(n); disk=int(disk); tick=int(tick)
us=lambda s: s*1e6/n
print(f"{c:5} disk {disk/1e6:8.1f} MB ({disk/n:6.0f} B/record) | produce {n/float(pw):9.0f} rec/s, client CPU {us(float(pu)+float(ps)):5.2f} us/rec, broker CPU {us(int(bp)/tick):5.2f} us/rec | consume {n/float(cw):9.0f} rec/s, client CPU {us(float(cu)+float(cs)):5.2f} us/rec, broker CPU {us(int(bc)/tick):5.2f} us/rec | read {lo} {same}")
PY
  kill $BPID; wait $BPID 2>/dev/null; rm -rf $D
done
