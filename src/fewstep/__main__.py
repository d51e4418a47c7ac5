from fewstep.cli.main import main

main()
