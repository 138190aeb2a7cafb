taskset -c 1 build/bench/flood/flood --proto line --port 38541 --server-pid 24495 --subs 100 --pubs 1 --size 64 --rate 1000 --verify 10 --read-interval 5000 --duration 8 --warmup 2
