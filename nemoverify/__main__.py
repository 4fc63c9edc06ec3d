from nemoverify.cli import main

main()
