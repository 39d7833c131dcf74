from moa_lit.bench.speed import main

main()
