taskset -c 1 build/bench/flood/flood --proto line --port 38093 --server-pid 24062 --subs 100 --pubs 1 --size 64 --rate 0 --verify 2 --duration 8 --warmup 2
