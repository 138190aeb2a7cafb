taskset -c 1 build/bench/flood/flood --proto redis --port 24920 --server-pid 25578 --subs 100 --pubs 1 --size 64 --rate 10000 --verify 10 --read-interval 5000 --duration 8 --warmup 2
