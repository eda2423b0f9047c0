"""Values passed between the stages."""
