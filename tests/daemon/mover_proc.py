"""A mover process for the fault-injection test: ``python -m tests.daemon.mover_proc WORKER_ID``.

Reads the settings (JSON) from ``LIQUID_TEST_SETTINGS``, recovers, and works the journal
until it is empty; ``LIQUID_MOVER_CRASH_AT`` makes it SIGKILL itself on the way.
"""

from __future__ import annotations

import json
import os
import sys

from liquid.bootstrap import open_runtime
from liquid.config import Settings
from liquid.tiering.mover import Mover


def main() -> None:
    settings = Settings(**json.loads(os.environ["LIQUID_TEST_SETTINGS"]))
    with open_runtime(settings, migrate=False) as runtime:
        mover = Mover.from_service(runtime.service, worker_id=sys.argv[1])
        mover.recover()
        report = mover.run_until_idle()
        print(json.dumps(report.as_dict()))


if __name__ == "__main__":
    main()
