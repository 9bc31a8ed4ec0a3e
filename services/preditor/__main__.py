import sys

from services.preditor.service import main

sys.exit(main())
