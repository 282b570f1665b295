from exp.cli import main

main()
