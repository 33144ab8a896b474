jit.off()
dofile("tests/lua/test_gradcheck.lua")
