taskset -c 1 build/bench/flood/flood --proto line --port 38539 --server-pid 19933 --subs 1 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
