"""The ROS 2 layer: the ``pixellm_node`` lifecycle node, the camera simulator and their runner.

Modules: ``pixellm_node`` (the node), ``conversions`` (messages <-> arrays), ``qos``, ``params``,
``worker`` (request queue and worker thread), ``requests``, ``engine_host`` (model load),
``diagnostics`` (health on /diagnostics), ``transport`` (Fast DDS room for camera-sized messages),
``spinning`` (process set-up),
``camera_sim`` (a camera publishing generated scenes), ``runner`` (start the nodes where
``ros2 launch`` is absent). Nothing is imported here, so ``import pixellm_ros.ros.conversions``
does not pull in torch.
"""
