import sys

from services.paper.service import main

sys.exit(main())
