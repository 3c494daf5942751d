import sys

from hashmatch.cli import main

sys.exit(main())
