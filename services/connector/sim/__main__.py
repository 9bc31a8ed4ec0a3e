import sys

from services.connector.sim.cli import main

sys.exit(main())
