taskset -c 1 build/bench/flood/flood --proto line --port 34371 --server-pid 23822 --subs 100 --pubs 1 --size 64 --rate 10000 --verify 10 --read-interval 5000 --duration 8 --warmup 2
