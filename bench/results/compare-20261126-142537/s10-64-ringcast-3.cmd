taskset -c 1 build/bench/flood/flood --proto line --port 42815 --server-pid 20803 --subs 10 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
