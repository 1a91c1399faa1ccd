from reference.cli import module_main

module_main()
