from mmgr.cli.app import main

main()
