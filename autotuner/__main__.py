import sys

from autotuner.cli.main import main

sys.exit(main())
