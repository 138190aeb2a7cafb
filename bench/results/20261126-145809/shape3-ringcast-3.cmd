taskset -c 1 build/bench/flood/flood --proto line --port 39929 --server-pid 24395 --subs 1000 --pubs 1 --size 64 --rate 0 --verify 2 --duration 8 --warmup 2
