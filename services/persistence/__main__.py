import sys

from services.persistence.service import main

sys.exit(main())
