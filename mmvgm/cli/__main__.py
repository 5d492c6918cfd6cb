from mmvgm.cli import main

main()
