"""Attribution: the Grad-CAM family and gradient maps.

Modules, one job each: `targets` (which class scores to explain), `graph` (a forward pass
cut at the hooked layers and the gradients of class scores w.r.t. them), `cam` (the
channel-weighting formulas), `perturb` (ScoreCAM and AblationCAM), `gradients` (input
gradients, integrated gradients, SmoothGrad), `guided` (the thread-scoped ReLU override of
guided backprop and deconvnet), `chunks` (batch sizes under a memory bound), `faithfulness`
(deletion/insertion AUC), `sanity` (model randomization), `layers` (the spatial layers a
map can use), `plan` (validation), `cam_pass` (one CAM forward pass), `maps` (methods run
by name), `explain` (orchestration) and `pictures` (rendering). No web framework, no
request schemas.
"""
