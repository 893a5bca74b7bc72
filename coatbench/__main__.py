from coatbench.cli.commands import main

main()
