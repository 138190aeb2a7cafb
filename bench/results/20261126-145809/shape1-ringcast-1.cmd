taskset -c 1 build/bench/flood/flood --proto line --port 36453 --server-pid 23665 --subs 100 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 8 --warmup 2
