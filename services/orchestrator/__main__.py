import sys

from services.orchestrator.service import main

sys.exit(main())
