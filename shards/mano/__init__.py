"""MANO and camera tools for InterHand2.6M (the real data set with the licensed MANO files, or the
embedded synthetic set, which ships its own MANO model in DATA/mano/).

    model.py    safe loading of MANO pickles (no chumpy, no code run), the left-hand fix, smplx layers,
                a float64 numpy forward pass, axis-angle <-> matrix
    convert.py  world-to-camera conversion of meshes (a) and of parameters (b), the fitting error
    data.py     a split's images, cameras, 3D joints and MANO parameters as arrays
    render.py   numpy z-buffer rasteriser, overlays, OBJ / PNG output
    records.py  the MANO fields of the shard records (python -m shards --mano DIR)
    tools.py    fit-error, conversion check and rendering on a split (python -m shards.mano ...)

Camera layout plots: python -m shards.cameras.
"""
