taskset -c 1 build/bench/flood/flood --proto line --port 43521 --server-pid 16331 --subs 1 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
