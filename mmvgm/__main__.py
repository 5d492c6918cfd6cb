"""``python -m mmvgm`` is ``mmvgm``."""
from mmvgm.cli import main

if __name__ == "__main__":
    main()
