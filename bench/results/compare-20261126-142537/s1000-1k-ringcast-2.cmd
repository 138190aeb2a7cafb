taskset -c 1 build/bench/flood/flood --proto line --port 40735 --server-pid 20515 --subs 1000 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 5 --warmup 1
