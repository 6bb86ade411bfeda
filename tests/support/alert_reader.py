"""A healthy StreamAlerts subscriber in a process of its own, so that the
load of the test process (its threads, the GIL) cannot make it slow.

    python alert_reader.py ADDRESS AFTER_SEQ COUNT [DEADLINE_SECONDS]
    (the API key in ALERT_READER_KEY; none when unset)

Prints `started SEQ` (the first message's resume point) once subscribed,
`got N` after every PROGRESS alerts (so a test can wait for it to keep up),
then reads until COUNT alerts came, the stream ended or the deadline
passed, and prints one JSON line: {"seqs": [...], "arrived": [...],
"error": CODE or null, "details": ...}. `arrived` holds time.monotonic()
per alert: CLOCK_MONOTONIC, the same clock in every process of the machine.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import grpc

from uba.v1 import service_pb2, service_pb2_grpc

PROGRESS = 50


def main() -> int:
    address, after_seq, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    deadline = float(sys.argv[4]) if len(sys.argv) > 4 else 300.0
    key = os.environ.get("ALERT_READER_KEY", "")
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
    call = service_pb2_grpc.BehaviorAnalyticsServiceStub(channel).StreamAlerts(
        service_pb2.StreamAlertsRequest(after_seq=after_seq), metadata=metadata
    )
    timer = threading.Timer(deadline, call.cancel)
    timer.daemon = True
    timer.start()
    seqs: list[int] = []
    arrived: list[float] = []
    error = details = None
    started = False
    try:
        for reply in call:
            if reply.HasField("alert"):
                seqs.append(reply.alert.seq)
                arrived.append(time.monotonic())
                if len(seqs) % PROGRESS == 0:
                    print(f"got {len(seqs)}", flush=True)
            if not started:
                print(f"started {reply.seq}", flush=True)
                started = True
            if len(seqs) >= count:
                break
    except grpc.RpcError as err:
        error, details = err.code().name, err.details()
    finally:
        timer.cancel()
        call.cancel()
        channel.close()
    print(
        json.dumps({"seqs": seqs, "arrived": arrived, "error": error, "details": details}),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
