taskset -c 1 build/bench/flood/flood --proto line --port 34649 --server-pid 19618 --subs 1000 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 5 --warmup 1
