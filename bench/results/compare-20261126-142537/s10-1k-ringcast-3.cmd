taskset -c 1 build/bench/flood/flood --proto line --port 39035 --server-pid 21136 --subs 10 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 5 --warmup 1
