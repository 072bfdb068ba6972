import sys

from training.release.cli import main

sys.exit(main())
