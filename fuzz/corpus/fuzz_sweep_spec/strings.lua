local s = ("x"):rep(10) .. string.format("%d", #{1,2}) return {script=s, grid={a={1}}, metric="m", name=s:upper()}
