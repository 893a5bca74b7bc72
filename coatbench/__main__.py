from coatbench.cli import main

main()
