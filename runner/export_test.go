package runner

// Settle waits until no container is being removed in the background, so
// that a test counts only the containers that are meant to stay.
func (s *Service) Settle() { s.agent.Settle() }
